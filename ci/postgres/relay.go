package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kilnci/kiln/ci"
)

// The masters' events cross through LISTEN/NOTIFY on one channel. Each
// notification is a JSON document {"m": master ID, "e": [events]}: a
// master sends the events it has at hand together, as many as fit in a
// notification (PostgreSQL takes up to 8000 bytes), so that a burst of
// log lines costs a few statements, not one each.
const (
	eventChannel = "kiln_events"
	// maxNotify is the most bytes a notification carries, under
	// PostgreSQL's limit of 8000.
	maxNotify = 7000
	// relayBackoff is the pause before the listener connects again after
	// losing its connection.
	relayBackoff = time.Second
)

// wireEvent is a ci.Event as a notification carries it: short names, and
// nothing for zero fields.
type wireEvent struct {
	Type       ci.EventType `json:"t"`
	ChangeID   int64        `json:"c,omitempty"`
	BuildsetID int64        `json:"bs,omitempty"`
	RequestID  int64        `json:"r,omitempty"`
	BuilderID  int64        `json:"br,omitempty"`
	BuildID    int64        `json:"b,omitempty"`
	StepID     int64        `json:"s,omitempty"`
	LogID      int64        `json:"l,omitempty"`
	WorkerID   int64        `json:"w,omitempty"`
	FirstLine  int          `json:"f,omitempty"`
	LastLine   int          `json:"la,omitempty"`
	Bytes      int          `json:"by,omitempty"`
	Dialect    string       `json:"d,omitempty"`
	Status     int          `json:"st,omitempty"`
	Results    ci.Result    `json:"re,omitempty"`
	Reason     string       `json:"why,omitempty"`
}

type notification struct {
	Master int64             `json:"m"`
	Events []json.RawMessage `json:"e"`
}

func toWire(e ci.Event) wireEvent {
	return wireEvent{e.Type, e.ChangeID, e.BuildsetID, e.RequestID, e.BuilderID, e.BuildID, e.StepID, e.LogID,
		e.WorkerID, e.FirstLine, e.LastLine, e.Bytes, e.Dialect, e.Status, e.Results, e.Reason}
}

func (w wireEvent) event(master int64) ci.Event {
	return ci.Event{Type: w.Type, ChangeID: w.ChangeID, BuildsetID: w.BuildsetID, RequestID: w.RequestID,
		BuilderID: w.BuilderID, BuildID: w.BuildID, StepID: w.StepID, LogID: w.LogID, WorkerID: w.WorkerID,
		FirstLine: w.FirstLine, LastLine: w.LastLine, Bytes: w.Bytes, Dialect: w.Dialect, Status: w.Status,
		Results: w.Results, Reason: w.Reason, MasterID: master}
}

// RelayEvents sends the events of master masterID read from out to the
// other masters with NOTIFY, and calls in with theirs, received with
// LISTEN on a connection of its own (not one of the pool's). Events on
// out of other masters are skipped. It calls resync once it listens, and
// again each time it listens anew after its connection was lost (it
// connects again after a pause): notifications sent meanwhile are lost. It returns nil once out is closed and what was read
// from it sent, or ctx's error when ctx ends; an error sending events
// ends it too (the caller runs it again).
func (s *Store) RelayEvents(ctx context.Context, masterID int64, out <-chan ci.Event, in func(ci.Event), resync func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	listening := make(chan struct{})
	listenDone := make(chan struct{})
	go func() {
		defer close(listenDone)
		s.listen(ctx, masterID, in, resync, listening)
	}()
	defer func() { cancel(); <-listenDone }()
	// Wait until the listener is in place (or ctx ends), so that a caller
	// sending events next knows it hears the answers.
	select {
	case <-listening:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		var e ci.Event
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok = <-out:
		}
		if !ok {
			return nil
		}
		batch := []ci.Event{e}
	drain:
		for len(batch) < 512 {
			select {
			case e, ok := <-out:
				if !ok {
					break drain
				}
				batch = append(batch, e)
			default:
				break drain
			}
		}
		if err := s.notify(ctx, masterID, batch); err != nil {
			return err
		}
	}
}

// notify sends the master's events among batch, as few notifications as
// fit them, in one statement.
func (s *Store) notify(ctx context.Context, masterID int64, batch []ci.Event) error {
	var payloads []string
	var cur []json.RawMessage
	size := 0
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		b, err := json.Marshal(notification{Master: masterID, Events: cur})
		if err != nil {
			return err
		}
		payloads = append(payloads, string(b))
		cur, size = nil, 0
		return nil
	}
	for _, e := range batch {
		if e.MasterID != masterID {
			continue
		}
		b, err := json.Marshal(toWire(e))
		if err != nil {
			return fmt.Errorf("postgres: relay events: %w", err)
		}
		if len(b)+64 > maxNotify {
			// Only a stop's reason could be that long: it is cut.
			w := toWire(e)
			w.Reason = w.Reason[:min(len(w.Reason), 1000)]
			if b, err = json.Marshal(w); err != nil || len(b)+64 > maxNotify {
				continue
			}
		}
		if size+len(b)+1 > maxNotify-32 {
			if err := flush(); err != nil {
				return err
			}
		}
		cur = append(cur, b)
		size += len(b) + 1
	}
	if err := flush(); err != nil {
		return err
	}
	if len(payloads) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, eventChannel, payloads); err != nil {
		return fmt.Errorf("postgres: relay events: notify: %w", err)
	}
	return nil
}

// listen receives the other masters' events until ctx ends, connecting
// again when its connection is lost. listening is closed once it first
// listens (or gives up because ctx ended).
func (s *Store) listen(ctx context.Context, masterID int64, in func(ci.Event), resync func(), listening chan struct{}) {
	first := true
	defer func() {
		if first {
			close(listening)
		}
	}()
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, masterID, in, func() {
			if first {
				first = false
				close(listening)
			}
			resync()
		})
		if ctx.Err() != nil {
			return
		}
		s.logf("postgres: the connection receiving the other masters' events was lost; connecting again: %v", redact(err, s.dsn))
		select {
		case <-ctx.Done():
			return
		case <-time.After(relayBackoff):
		}
	}
}

// listenOnce connects, listens, calls ready, and hands the notifications
// of other masters to in until the connection fails or ctx ends.
func (s *Store) listenOnce(ctx context.Context, masterID int64, in func(ci.Event), ready func()) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	s.setListener(conn)
	defer func() {
		s.setListener(nil)
		conn.Close(context.WithoutCancel(ctx))
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+eventChannel); err != nil {
		return err
	}
	ready()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var msg notification
		if err := json.Unmarshal([]byte(n.Payload), &msg); err != nil {
			s.logf("postgres: a notification on %s is not understood: %v", eventChannel, err)
			continue
		}
		if msg.Master == masterID {
			continue
		}
		for _, raw := range msg.Events {
			var w wireEvent
			if err := json.Unmarshal(raw, &w); err != nil {
				s.logf("postgres: an event of master %d is not understood: %v", msg.Master, err)
				continue
			}
			in(w.event(msg.Master))
		}
	}
}

// setListener records the listener's connection, for tests that cut it.
func (s *Store) setListener(c *pgx.Conn) {
	s.listenerMu.Lock()
	s.listener = c
	s.listenerMu.Unlock()
}

// DropListener closes the connection on which the store receives the
// other masters' events, as a network failure would; the relay connects
// again. It reports whether there was one. It is for tests.
func (s *Store) DropListener() bool {
	s.listenerMu.Lock()
	c := s.listener
	s.listenerMu.Unlock()
	if c == nil {
		return false
	}
	// Closing the socket under the reader makes WaitForNotification fail.
	return c.PgConn().Conn().Close() == nil
}

func (s *Store) logf(format string, args ...any) {
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	log.Warn(fmt.Sprintf(format, args...))
}
