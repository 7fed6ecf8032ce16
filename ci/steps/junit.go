package steps

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/kilnci/kiln/ci"
)

// DefaultJUnitMaxSize bounds a JUnit report JUnit reads.
const DefaultJUnitMaxSize = 16 << 20

// JUnit records the test results of JUnit XML reports a command wrote on
// the worker: each report is uploaded to the master (bounded in size),
// parsed, and stored as a test result set of the step (category
// ci.TestPassFail, unit ci.TestUnitBoolean: "1" passed, "0" failed or in
// error), which the data API lists under /api/v2/test_result_sets. This is
// what a Buildbot step does with a TestResultSubmitter.
//
// The step's state counts the tests ("12 passed, 2 failed, 1 skipped").
// A failed test makes the step FAILURE (WARNINGS with WarnOnFailedTests,
// SUCCESS with IgnoreFailedTests); a report that cannot be read (missing,
// too large, not JUnit XML) makes it FAILURE, with the reason in its
// "junit" log. Skipped tests are counted but not stored.
//
// Run it after the test command, with AlwaysRun, or give the test command
// WarnOnFailure or IgnoreFailure so that this step decides.
type JUnit struct {
	ci.StepOptions
	// Reports are the report files on the worker, relative to Workdir: a
	// string, a list, or a ci.Renderable giving one. Required.
	Reports any
	// Workdir is as for ShellCommand.
	Workdir any
	// Description describes the source of the results in each set; the
	// report's file name if empty.
	Description string
	// MaxSize bounds each report (DefaultJUnitMaxSize if 0).
	MaxSize int64
	// WarnOnFailedTests makes failed tests WARNINGS rather than FAILURE.
	WarnOnFailedTests bool
	// IgnoreFailedTests makes failed tests leave the step SUCCESS (they are
	// still recorded and counted).
	IgnoreFailedTests bool
}

// Options implements ci.Step, naming the step "junit" by default.
func (j *JUnit) Options() ci.StepOptions { return named(j.StepOptions, "junit") }

// Validate checks the configuration.
func (j *JUnit) Validate() error {
	errs := []error{required("Reports", j.Reports), checkField("Workdir", j.Workdir)}
	if j.MaxSize < 0 {
		errs = append(errs, fmt.Errorf("MaxSize %d is negative", j.MaxSize))
	}
	return errors.Join(errs...)
}

// Run implements ci.Step.
func (j *JUnit) Run(ctx context.Context, s *ci.StepRun) (ci.Result, error) {
	reports, err := s.RenderList(ctx, j.Reports)
	if err != nil {
		return ci.Exception, fmt.Errorf("reports: %w", err)
	}
	if len(reports) == 0 {
		return ci.Exception, errors.New("reports: the list is empty")
	}
	workdir, err := renderWorkdir(ctx, s, j.Workdir)
	if err != nil {
		return ci.Exception, err
	}
	maxSize := j.MaxSize
	if maxSize == 0 {
		maxSize = DefaultJUnitMaxSize
	}
	// One stdio log for the uploads, the reports' text log after it.
	stdio, err := s.AddLog(ctx, "stdio", ci.LogStream)
	if err != nil {
		return ci.Exception, err
	}
	log, err := s.AddLog(ctx, "junit", ci.LogText)
	if err != nil {
		return ci.Exception, err
	}
	var total JUnitCounts
	var unread []string
	for _, report := range reports {
		s.SetStateString("reading " + path.Base(report))
		text, res, err := j.upload(ctx, s, stdio, workdir, report, maxSize)
		if err != nil {
			return res, err
		}
		if res != ci.Success {
			unread = append(unread, report)
			log.AddStdout(fmt.Sprintf("%s: could not be read from the worker (see the stdio log)\n", report))
			continue
		}
		results, counts, err := ParseJUnit(bytes.NewReader(text), maxSize)
		if err != nil {
			unread = append(unread, report)
			log.AddStdout(fmt.Sprintf("%s: %v\n", report, err))
			continue
		}
		desc := j.Description
		if desc == "" {
			desc = path.Base(report)
		}
		set := ci.TestResultSet{Description: desc, Category: ci.TestPassFail, ValueUnit: ci.TestUnitBoolean}
		if _, err := s.AddTestResults(ctx, set, results); err != nil {
			return ci.Exception, err
		}
		log.AddStdout(fmt.Sprintf("%s: %s\n", report, counts))
		for _, f := range counts.FailedTests {
			log.AddStdout("  failed: " + f + "\n")
		}
		total.add(counts)
	}
	state := total.String()
	if len(unread) > 0 {
		state += fmt.Sprintf(", %d unreadable report", len(unread))
		if len(unread) > 1 {
			state += "s"
		}
	}
	s.SetStateString(state)
	switch {
	case len(unread) > 0:
		return ci.Failure, nil
	case total.Failed == 0 || j.IgnoreFailedTests:
		return ci.Success, nil
	case j.WarnOnFailedTests:
		return ci.Warnings, nil
	}
	return ci.Failure, nil
}

// upload reads a report from the worker into memory.
func (j *JUnit) upload(ctx context.Context, s *ci.StepRun, stdio *ci.LogWriter, workdir, report string, max int64) ([]byte, ci.Result, error) {
	w := &memWriter{max: max}
	cmd := &ci.RemoteCommand{
		Name: "uploadFile",
		Args: map[string]any{
			"workdir":   workdir,
			"workersrc": report,
			"maxsize":   max,
			"blocksize": DefaultBlockSize,
			"keepstamp": false,
		},
		Upload: w,
		Stdio:  stdio,
	}
	res, err := commandResult(cmd, runRemote(ctx, s, cmd, true))
	if w.overflow {
		cmd.Stdio.AddHeader(fmt.Sprintf("%s is larger than %d bytes\n", report, max))
		return nil, ci.Failure, err
	}
	if err != nil || res != ci.Success {
		return nil, res, err
	}
	if !w.closed {
		cmd.Stdio.AddHeader("the worker did not finish sending the file\n")
		return nil, ci.Failure, nil
	}
	return w.buf.Bytes(), ci.Success, nil
}

// memWriter receives an uploaded file into memory, up to max bytes.
type memWriter struct {
	buf      bytes.Buffer
	max      int64
	overflow bool
	closed   bool
}

var _ ci.FileWriter = (*memWriter)(nil)

func (w *memWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errors.New("upload: write after close")
	}
	// Past the limit, data is dropped and the upload fails, whatever the
	// worker reports.
	if room := w.max - int64(w.buf.Len()); int64(len(p)) > room {
		w.overflow = true
		w.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return w.buf.Write(p)
}

func (w *memWriter) Utime(access, modified time.Time) error { return nil }
func (w *memWriter) Unpack() error                          { return errors.New("upload: not a directory upload") }
func (w *memWriter) Close() error                           { w.closed = true; return nil }

// JUnitCounts counts the test cases of JUnit reports.
type JUnitCounts struct {
	Passed, Failed, Skipped int
	// FailedTests names the failed tests (the first maxFailedNames).
	FailedTests []string
}

const maxFailedNames = 50

func (c *JUnitCounts) add(o JUnitCounts) {
	c.Passed += o.Passed
	c.Failed += o.Failed
	c.Skipped += o.Skipped
	for _, n := range o.FailedTests {
		if len(c.FailedTests) < maxFailedNames {
			c.FailedTests = append(c.FailedTests, n)
		}
	}
}

// String says what was counted: "12 passed, 2 failed, 1 skipped" (the
// counts that are zero left out, but for passed).
func (c JUnitCounts) String() string {
	s := fmt.Sprintf("%d passed", c.Passed)
	if c.Failed > 0 {
		s += fmt.Sprintf(", %d failed", c.Failed)
	}
	if c.Skipped > 0 {
		s += fmt.Sprintf(", %d skipped", c.Skipped)
	}
	return s
}

// junitCase is a <testcase> element.
type junitCase struct {
	Name      string    `xml:"name,attr"`
	ClassName string    `xml:"classname,attr"`
	File      string    `xml:"file,attr"`
	Line      string    `xml:"line,attr"`
	Time      string    `xml:"time,attr"`
	Failure   *struct{} `xml:"failure"`
	Error     *struct{} `xml:"error"`
	Skipped   *struct{} `xml:"skipped"`
}

// ParseJUnit reads a JUnit XML report (a <testsuites> or <testsuite>
// root, test suites nested at any depth) of at most max bytes, and returns
// its test cases as pass/fail results ("1" passed, "0" failed or in
// error; skipped cases are only counted) with their counts. A test's name
// is its class name and name joined by a dot; its code path and line are
// the file and line attributes some tools write; its duration is the time
// attribute (seconds). An error says what is wrong and where.
func ParseJUnit(r io.Reader, max int64) ([]*ci.TestResult, JUnitCounts, error) {
	var counts JUnitCounts
	var results []*ci.TestResult
	lr := &io.LimitedReader{R: r, N: max + 1}
	d := xml.NewDecoder(lr)
	root := true
	for {
		tok, err := d.Token()
		if lr.N <= 0 {
			return nil, counts, fmt.Errorf("the report is larger than %d bytes", max)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, counts, fmt.Errorf("not JUnit XML: %w", err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root {
			if n := start.Name.Local; n != "testsuites" && n != "testsuite" {
				return nil, counts, fmt.Errorf("not a JUnit report: the root element is <%s>, not <testsuites> or <testsuite>", n)
			}
			root = false
			continue
		}
		if start.Name.Local != "testcase" {
			continue
		}
		line, _ := d.InputPos()
		var c junitCase
		if err := d.DecodeElement(&c, &start); err != nil {
			return nil, counts, fmt.Errorf("not JUnit XML: %w", err)
		}
		res, err := c.result()
		if err != nil {
			return nil, counts, fmt.Errorf("line %d: %w", line, err)
		}
		switch {
		case c.Failure != nil || c.Error != nil:
			counts.Failed++
			if len(counts.FailedTests) < maxFailedNames {
				counts.FailedTests = append(counts.FailedTests, res.TestName)
			}
		case c.Skipped != nil:
			counts.Skipped++
			continue
		default:
			counts.Passed++
		}
		results = append(results, res)
	}
	if root {
		return nil, counts, errors.New("not a JUnit report: no root element")
	}
	return results, counts, nil
}

// result gives a test case as a test result.
func (c *junitCase) result() (*ci.TestResult, error) {
	name := strings.TrimSpace(c.Name)
	if cl := strings.TrimSpace(c.ClassName); cl != "" && name != "" {
		name = cl + "." + name
	}
	res := &ci.TestResult{TestName: name, TestCodePath: strings.TrimSpace(c.File), Value: "1"}
	if c.Failure != nil || c.Error != nil {
		res.Value = "0"
	}
	if res.TestName == "" && res.TestCodePath == "" {
		return nil, errors.New("a <testcase> has no name")
	}
	if c.Line != "" {
		n, err := strconv.Atoi(strings.TrimSpace(c.Line))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("test %q: line %q is not a line number", res.TestName, c.Line)
		}
		res.Line = n
	}
	if c.Time != "" {
		secs, err := strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(c.Time), ",", ""), 64)
		if err != nil || secs < 0 || math.IsInf(secs, 0) || math.IsNaN(secs) || secs > math.MaxInt64/1e9 {
			return nil, fmt.Errorf("test %q: time %q is not a number of seconds", res.TestName, c.Time)
		}
		ns := int64(math.Round(secs * 1e9))
		res.DurationNS = &ns
	}
	return res, nil
}
