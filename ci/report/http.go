package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/kilnci/kiln/ci"
)

// HTTPPush posts a JSON document (a Document) to a URL for every build
// that starts and finishes, as Buildbot's HttpStatusPush. An answer other
// than 2xx, or no answer, is returned as an error, and the master tries
// again.
type HTTPPush struct {
	// URL receives the documents. Required.
	URL string
	// Header is added to every request (an Authorization, say).
	Header http.Header
	// HTTPClient sends the requests; http.DefaultClient if nil.
	HTTPClient *http.Client
}

var _ ci.Reporter = (*HTTPPush)(nil)

// A Document is what HTTPPush posts: the report, with Buildbot's names.
type Document struct {
	// Event is "started" or "finished".
	Event ci.ReportEvent `json:"event"`
	// Title is the master's title.
	Title string `json:"title,omitempty"`
	// URL is the build's page.
	URL     string      `json:"url,omitempty"`
	Builder *ci.Builder `json:"builder"`
	Build   *ci.Build   `json:"build"`
	// ResultsText names the build's results ("success", ...), once it has
	// finished.
	ResultsText string `json:"results_text,omitempty"`
	// Properties are the build's: name to [value, source], as Buildbot's
	// API gives them.
	Properties   map[string][2]any `json:"properties"`
	Worker       string            `json:"worker,omitempty"`
	Steps        []*ci.StepRecord  `json:"steps"`
	Buildset     *ci.Buildset      `json:"buildset,omitempty"`
	SourceStamps []ci.SourceStamp  `json:"sourcestamps"`
}

// NewDocument makes the document of a report.
func NewDocument(r *ci.Report) *Document {
	d := &Document{
		Event: r.Event, Title: r.Title, URL: r.URL, Builder: r.Builder, Build: r.Build,
		Properties: map[string][2]any{}, Worker: r.Worker, Steps: r.Steps,
		Buildset: r.Buildset, SourceStamps: r.SourceStamps,
	}
	if d.Steps == nil {
		d.Steps = []*ci.StepRecord{}
	}
	if d.SourceStamps == nil {
		d.SourceStamps = []ci.SourceStamp{}
	}
	if r.Build != nil {
		for name, p := range r.Build.Properties {
			d.Properties[name] = [2]any{p.Value, p.Source}
		}
		if r.Event == ci.BuildFinished {
			d.ResultsText = r.Build.Results.String()
		}
	}
	return d
}

// Validate reports configuration errors; the master calls it when it
// starts.
func (h *HTTPPush) Validate() error {
	u, err := url.Parse(h.URL)
	if h.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("URL %q is not an http(s) URL", h.URL)
	}
	return nil
}

// Report implements ci.Reporter.
func (h *HTTPPush) Report(ctx context.Context, r *ci.Report) error {
	body, err := json.Marshal(NewDocument(r))
	if err != nil {
		return fmt.Errorf("http push: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("http push: %w", err)
	}
	for k, v := range h.Header {
		req.Header[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
	}
	req.Header.Set("Content-Type", "application/json")
	client := h.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// The error names the URL; it has no header, so no credential.
		return fmt.Errorf("http push: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("http push: %s answered %s: %s", redact(h.URL), resp.Status, oneLine(string(msg)))
	}
	return nil
}

// redact drops the password of a URL, for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}
