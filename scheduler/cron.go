package scheduler

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The cron parser of Nightly. Kiln parses cron itself rather than with
// robfig/cron, Go's well-known cron library, for its daylight-saving
// behaviour: robfig/cron skips a run whose wall-clock time falls in the
// hour that clocks skip when set forward (a "30 2 * * *" job does not run
// that night; its pull request to change this is still open), and Nightly
// promises what Vixie and ISC cron do. A time that does not occur runs at
// the instant the clock jumps past it, and a time that occurs twice (clocks
// set back) runs once, at its first occurrence; TestNightly_Next checks
// both in zones that change at 02:00, at midnight and by 30 minutes, and
// TestNightly_NextEveryMinute across a year. Only the computation of the
// next time is needed (Nightly waits on the master's clock, which tests
// replace, not on a library's own timer goroutine), and the whole is a
// few hundred lines: five fields of ranges, steps and names, 7 for Sunday
// as well as 0, the @daily family, and Buildbot's field lists.

// A cronSchedule is a parsed cron specification: a set of allowed values
// for each field, as bits.
type cronSchedule struct {
	minute, hour, dom, month, dow uint64
	// domStar and dowStar record a field starting with "*": when neither
	// does, a day matches if either its day of month or its day of week
	// does, as in Vixie cron.
	domStar, dowStar bool
}

type cronField struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i (day-of-week: Sunday is 0)
}

var cronFields = [5]cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day-of-month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	// 7 is Sunday too.
	{name: "day-of-week", min: 0, max: 7, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

var cronDescriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// parseCron parses a standard five-field cron specification (see
// Nightly.Spec). Errors name the field and the token at fault.
func parseCron(spec string) (*cronSchedule, error) {
	text := strings.TrimSpace(spec)
	if strings.HasPrefix(text, "@") {
		d, ok := cronDescriptors[strings.ToLower(text)]
		if !ok {
			return nil, fmt.Errorf("unknown descriptor %q (want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)", text)
		}
		text = d
	}
	fields := strings.Fields(text)
	if len(fields) != 5 {
		return nil, fmt.Errorf("%d fields, want 5: minute hour day-of-month month day-of-week", len(fields))
	}
	var c cronSchedule
	sets := [5]*uint64{&c.minute, &c.hour, &c.dom, &c.month, &c.dow}
	for i, f := range fields {
		bits, err := parseCronField(cronFields[i], f)
		if err != nil {
			return nil, err
		}
		*sets[i] = bits
	}
	c.domStar = strings.HasPrefix(fields[2], "*")
	c.dowStar = strings.HasPrefix(fields[4], "*")
	return &c, nil
}

func parseCronField(f cronField, text string) (uint64, error) {
	var bits uint64
	for _, tok := range strings.Split(text, ",") {
		b, err := parseCronToken(f, tok)
		if err != nil {
			return 0, fmt.Errorf("%s field: %q %s", f.name, tok, err)
		}
		bits |= b
	}
	return bits, nil
}

// parseCronToken parses one element of a list: *, N, N-M, with an
// optional /step; N/step means N-max/step.
func parseCronToken(f cronField, tok string) (uint64, error) {
	if tok == "" {
		return 0, fmt.Errorf("is empty")
	}
	rng, stepText, hasStep := strings.Cut(tok, "/")
	step := 1
	if hasStep {
		n, err := strconv.Atoi(stepText)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("has a step %q that is not a positive number", stepText)
		}
		if n > f.max-f.min {
			return 0, fmt.Errorf("has a step %d larger than the field's range %d-%d", n, f.min, f.max)
		}
		step = n
	}
	lo, hi := f.min, f.max
	if f.name == "day-of-week" {
		hi = 6 // "*" is every day once
	}
	switch {
	case rng == "*":
	case strings.Contains(rng, "-"):
		a, b, _ := strings.Cut(rng, "-")
		var err error
		if lo, err = cronValue(f, a); err != nil {
			return 0, fmt.Errorf("has %q, which %w", a, err)
		}
		if hi, err = cronValue(f, b); err != nil {
			return 0, fmt.Errorf("has %q, which %w", b, err)
		}
		if f.name == "day-of-week" && hi == 0 && lo > 0 {
			hi = 7 // "fri-sun"
		}
		if lo > hi {
			return 0, fmt.Errorf("is a range whose start %d is after its end %d", lo, hi)
		}
	default:
		v, err := cronValue(f, rng)
		if err != nil {
			return 0, err
		}
		lo, hi = v, v
		if hasStep {
			hi = f.max
		}
	}
	var bits uint64
	for v := lo; v <= hi; v += step {
		if f.name == "day-of-week" && v == 7 {
			v = 0
			bits |= 1
			break
		}
		bits |= 1 << v
	}
	return bits, nil
}

func cronValue(f cronField, s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < f.min || n > f.max {
			return 0, fmt.Errorf("is out of range %d-%d", f.min, f.max)
		}
		return n, nil
	}
	for i, name := range f.names {
		if strings.EqualFold(s, name) {
			return f.min + i, nil
		}
	}
	if f.names != nil {
		return 0, fmt.Errorf("is neither a number in %d-%d nor a name (%s)", f.min, f.max, strings.Join(f.names, ", "))
	}
	return 0, fmt.Errorf("is not a number in %d-%d", f.min, f.max)
}

// fieldsSchedule builds a schedule from Buildbot-style fields: nil means
// every value, except for minute, where it means 0 (Buildbot's default).
func fieldsSchedule(minute, hour, dom []int, month []time.Month, dow []time.Weekday) (*cronSchedule, error) {
	c := &cronSchedule{domStar: len(dom) == 0, dowStar: len(dow) == 0}
	var errs []string
	set := func(field string, vals []int, lo, hi int, def uint64) uint64 {
		if len(vals) == 0 {
			return def
		}
		var bits uint64
		for _, v := range vals {
			if v < lo || v > hi {
				errs = append(errs, fmt.Sprintf("%s: %d is out of range %d-%d", field, v, lo, hi))
				continue
			}
			bits |= 1 << v
		}
		return bits
	}
	all := func(lo, hi int) uint64 {
		var b uint64
		for v := lo; v <= hi; v++ {
			b |= 1 << v
		}
		return b
	}
	c.minute = set("Minute", minute, 0, 59, 1)
	c.hour = set("Hour", hour, 0, 23, all(0, 23))
	c.dom = set("DayOfMonth", dom, 1, 31, all(1, 31))
	months := make([]int, len(month))
	for i, m := range month {
		months[i] = int(m)
	}
	c.month = set("Month", months, 1, 12, all(1, 12))
	days := make([]int, len(dow))
	for i, d := range dow {
		days[i] = int(d)
	}
	c.dow = set("DayOfWeek", days, 0, 6, all(0, 6))
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return c, nil
}

func (c *cronSchedule) dayMatches(t time.Time) bool {
	if c.month&(1<<uint(t.Month())) == 0 {
		return false
	}
	dom := c.dom&(1<<uint(t.Day())) != 0
	dow := c.dow&(1<<uint(t.Weekday())) != 0
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}

// cronHorizon bounds the search for the next time: a schedule that does
// not match within it never matches (February 30th).
const cronHorizon = 10 * 366

// maxClockShift bounds how far a change of a zone's offset moves its wall
// clock (two hours in Antarctica/Troll), with a margin.
const maxClockShift = 3 * time.Hour

// next returns the first time strictly after after at which the schedule
// matches, read on the wall clock of loc, or the zero time if it never
// does. Each matching wall-clock time runs once:
//
//   - a time that occurs twice (clocks set back) runs at its first
//     occurrence;
//   - a time that does not occur (clocks set forward) runs at the instant
//     of the change, when the clock jumps past it, as Vixie cron does.
func (c *cronSchedule) next(after time.Time, loc *time.Location) time.Time {
	a := after.In(loc)
	y, mo, d := a.Date()
	// Start a day early: setting clocks back at midnight gives an instant
	// after "after" the previous date.
	start := time.Date(y, mo, d-1, 0, 0, 0, 0, time.UTC)
	for i := range cronHorizon {
		day := start.AddDate(0, 0, i)
		if !c.dayMatches(day) {
			continue
		}
		dy, dm, dd := day.Date()
		for h := 0; h < 24; h++ {
			if c.hour&(1<<uint(h)) == 0 {
				continue
			}
			// Skip hours wholly before after, whatever the clock changes.
			if !time.Date(dy, dm, dd, h, 59, 0, 0, loc).Add(maxClockShift).After(after) {
				continue
			}
			for mi := 0; mi < 60; mi++ {
				if c.minute&(1<<uint(mi)) == 0 {
					continue
				}
				if t := resolveWall(dy, dm, dd, h, mi, loc); t.After(after) {
					return t
				}
			}
		}
	}
	return time.Time{}
}

// resolveWall returns the instant at which the wall clock of loc shows the
// given minute: the first of two if it shows it twice, the instant it
// jumps past it if it never shows it.
func resolveWall(y int, mo time.Month, d, h, mi int, loc *time.Location) time.Time {
	t := time.Date(y, mo, d, h, mi, 0, 0, loc)
	want := time.Date(y, mo, d, h, mi, 0, 0, time.UTC)
	shown := wallUTC(t)
	if shown.Equal(want) {
		// Exists; if clocks were set back just before, an earlier instant
		// may show it too.
		start, _ := t.ZoneBounds()
		if !start.IsZero() {
			_, off := t.Zone()
			_, prevOff := start.Add(-time.Nanosecond).Zone()
			if prevOff > off {
				if alt := t.Add(-time.Duration(prevOff-off) * time.Second); alt.Before(start) && wallUTC(alt).Equal(want) {
					return alt
				}
			}
		}
		return t
	}
	// The wall clock skips that minute: run when it jumps.
	start, end := t.ZoneBounds()
	if shown.After(want) {
		return start
	}
	return end
}

// wallUTC returns t's wall clock (in its location) as a UTC time, to
// compare wall clocks.
func wallUTC(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond(), time.UTC)
}
