package scheduler_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kilnci/kiln/scheduler"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

func TestNightly_Validate(t *testing.T) {
	tests := []struct {
		name    string
		nightly scheduler.Nightly
		want    string // "" for no error
	}{
		{"Spec", scheduler.Nightly{Spec: "0 3 * * 1-5"}, ""},
		{"SpecNames", scheduler.Nightly{Spec: "*/15 9-17 * JAN-mar Mon,wed,FRI"}, ""},
		{"Descriptor", scheduler.Nightly{Spec: "@daily"}, ""},
		{"Fields", scheduler.Nightly{Hour: []int{3}, DayOfWeek: []time.Weekday{time.Monday}}, ""},
		{"TimeZone", scheduler.Nightly{Spec: "0 3 * * *", TimeZone: "Europe/Paris"}, ""},
		{"NoSchedule", scheduler.Nightly{}, "no schedule: set Spec"},
		{"Both", scheduler.Nightly{Spec: "0 3 * * *", Hour: []int{3}}, "set Spec or the fields"},
		{"HourOutOfRange", scheduler.Nightly{Spec: "0 25 * * *"}, `Spec "0 25 * * *": hour field: "25" is out of range 0-23`},
		{"MinuteNotANumber", scheduler.Nightly{Spec: "x * * * *"}, `Spec "x * * * *": minute field: "x" is not a number in 0-59`},
		{"BadTokenInList", scheduler.Nightly{Spec: "0 1,2,99 * * *"}, `hour field: "99" is out of range 0-23`},
		{"DayOfMonthZero", scheduler.Nightly{Spec: "0 0 0 * *"}, `day-of-month field: "0" is out of range 1-31`},
		{"MonthName", scheduler.Nightly{Spec: "0 0 * foo *"}, `month field: "foo" is neither a number in 1-12 nor a name (jan, feb,`},
		{"MonthOutOfRange", scheduler.Nightly{Spec: "0 0 * 13 *"}, `month field: "13" is out of range 1-12`},
		{"DayOfWeek", scheduler.Nightly{Spec: "0 0 * * 8"}, `day-of-week field: "8" is out of range 0-7`},
		{"ZeroStep", scheduler.Nightly{Spec: "*/0 * * * *"}, `minute field: "*/0" has a step "0" that is not a positive number`},
		{"HugeStep", scheduler.Nightly{Spec: "0 */24 * * *"}, `hour field: "*/24" has a step 24 larger than the field's range 0-23`},
		{"BackwardsRange", scheduler.Nightly{Spec: "5-1 * * * *"}, `minute field: "5-1" is a range whose start 5 is after its end 1`},
		{"BadRangeEnd", scheduler.Nightly{Spec: "0 0 * * 1-9"}, `day-of-week field: "1-9" has "9", which is out of range 0-7`},
		{"EmptyElement", scheduler.Nightly{Spec: "1,,2 * * * *"}, `minute field: "" is empty`},
		{"TooManyFields", scheduler.Nightly{Spec: "0 0 * * * *"}, `Spec "0 0 * * * *": 6 fields, want 5: minute hour day-of-month month day-of-week`},
		{"TooFewFields", scheduler.Nightly{Spec: "0 0"}, `2 fields, want 5`},
		{"UnknownDescriptor", scheduler.Nightly{Spec: "@every 5m"}, `unknown descriptor "@every 5m"`},
		{"NeverMatches", scheduler.Nightly{Spec: "0 0 30 2 *"}, `Spec "0 0 30 2 *" never matches`},
		{"FieldOutOfRange", scheduler.Nightly{Hour: []int{24}, Minute: []int{-1}}, "Minute: -1 is out of range 0-59\nHour: 24 is out of range 0-23"},
		{"FieldDay", scheduler.Nightly{DayOfWeek: []time.Weekday{7}}, "DayOfWeek: 7 is out of range 0-6"},
		{"UnknownTimeZone", scheduler.Nightly{Spec: "0 3 * * *", TimeZone: "Mars/Olympus"}, `TimeZone "Mars/Olympus": unknown time zone Mars/Olympus`},
		{"LocationAndTimeZone", scheduler.Nightly{Spec: "0 3 * * *", TimeZone: "UTC", Location: time.UTC}, "set Location or TimeZone, not both"},
		{"Filter", scheduler.Nightly{Spec: "0 3 * * *", OnlyIfChanged: true, ChangeFilter: scheduler.ChangeFilter{BranchRe: "("}}, `ChangeFilter: BranchRe "(": error parsing regexp`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.nightly.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestNightly_Next(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse("2006-01-02 15:04", s)
		require.NoError(t, err)
		return v
	}
	tests := []struct {
		name    string
		nightly scheduler.Nightly
		after   string
		want    []string // successive times, UTC
	}{
		{"Daily", scheduler.Nightly{Spec: "0 3 * * *"}, "2024-01-01 02:59", []string{"2024-01-01 03:00", "2024-01-02 03:00"}},
		{"StrictlyAfter", scheduler.Nightly{Spec: "0 3 * * *"}, "2024-01-01 03:00", []string{"2024-01-02 03:00"}},
		{"Steps", scheduler.Nightly{Spec: "*/15 * * * *"}, "2024-01-01 10:07", []string{"2024-01-01 10:15", "2024-01-01 10:30", "2024-01-01 10:45", "2024-01-01 11:00"}},
		{"RangeStep", scheduler.Nightly{Spec: "0 9-17/4 * * *"}, "2024-01-01 00:00", []string{"2024-01-01 09:00", "2024-01-01 13:00", "2024-01-01 17:00", "2024-01-02 09:00"}},
		{"StartStep", scheduler.Nightly{Spec: "50/5 10 * * *"}, "2024-01-01 00:00", []string{"2024-01-01 10:50", "2024-01-01 10:55", "2024-01-02 10:50"}},
		{"DayOfMonthStep", scheduler.Nightly{Spec: "0 12 */10 * *"}, "2024-01-01 13:00", []string{"2024-01-11 12:00", "2024-01-21 12:00", "2024-01-31 12:00", "2024-02-01 12:00"}},
		{"SundayZero", scheduler.Nightly{Spec: "0 0 * * 0"}, "2024-01-01 00:00", []string{"2024-01-07 00:00"}},
		{"SundaySeven", scheduler.Nightly{Spec: "0 0 * * 7"}, "2024-01-01 00:00", []string{"2024-01-07 00:00", "2024-01-14 00:00"}},
		{"SundayName", scheduler.Nightly{Spec: "0 0 * * sun"}, "2024-01-01 00:00", []string{"2024-01-07 00:00"}},
		{"WeekendRange", scheduler.Nightly{Spec: "0 0 * * fri-sun"}, "2024-01-01 00:00", []string{"2024-01-05 00:00", "2024-01-06 00:00", "2024-01-07 00:00", "2024-01-12 00:00"}},
		{"DayFieldsOr", scheduler.Nightly{Spec: "0 0 1 * mon"}, "2024-01-29 00:00", []string{"2024-02-01 00:00", "2024-02-05 00:00", "2024-02-12 00:00"}},
		{"DayFieldsAndWithStar", scheduler.Nightly{Spec: "0 0 */2 * 1"}, "2024-01-01 00:00", []string{"2024-01-15 00:00", "2024-01-29 00:00"}},
		{"MonthsAndWeekdays", scheduler.Nightly{Spec: "30 9 * jan-mar 1-5"}, "2024-03-29 10:00", []string{"2025-01-01 09:30"}},
		{"LeapDay", scheduler.Nightly{Spec: "0 0 29 2 *"}, "2024-03-01 00:00", []string{"2028-02-29 00:00"}},
		{"Hourly", scheduler.Nightly{Spec: "@hourly"}, "2024-01-01 10:30", []string{"2024-01-01 11:00"}},
		{"Weekly", scheduler.Nightly{Spec: "@weekly"}, "2024-01-01 10:30", []string{"2024-01-07 00:00"}},
		{"FieldsDefaultMinute", scheduler.Nightly{Hour: []int{3}}, "2024-01-01 04:00", []string{"2024-01-02 03:00"}},
		{"FieldsBuildbotMonday", scheduler.Nightly{Hour: []int{3}, Minute: []int{15, 45}, DayOfWeek: []time.Weekday{time.Monday}}, "2024-01-02 00:00", []string{"2024-01-08 03:15", "2024-01-08 03:45", "2024-01-15 03:15"}},
		{"FieldsMonth", scheduler.Nightly{Month: []time.Month{time.February}, DayOfMonth: []int{29}, Hour: []int{0}}, "2024-03-01 00:00", []string{"2028-02-29 00:00"}},
		{"FieldsEveryHour", scheduler.Nightly{Minute: []int{30}}, "2024-01-01 10:30", []string{"2024-01-01 11:30"}},

		// Europe/Paris: clocks go forward at 02:00 CET on 2024-03-31
		// (to 03:00 CEST, 01:00 UTC) and back at 03:00 CEST on 2024-10-27
		// (to 02:00 CET, 01:00 UTC).
		{"ParisGapRunsAtTheJump", scheduler.Nightly{Spec: "30 2 * * *", TimeZone: "Europe/Paris"}, "2024-03-30 02:00",
			[]string{"2024-03-31 01:00", "2024-04-01 00:30"}},
		{"ParisGapEveryHalfHour", scheduler.Nightly{Spec: "*/30 * * * *", TimeZone: "Europe/Paris"}, "2024-03-31 00:15",
			[]string{"2024-03-31 00:30", "2024-03-31 01:00", "2024-03-31 01:30"}},
		{"ParisAmbiguousRunsFirst", scheduler.Nightly{Spec: "30 2 * * *", TimeZone: "Europe/Paris"}, "2024-10-26 12:00",
			[]string{"2024-10-27 00:30", "2024-10-28 01:30"}},
		{"ParisAmbiguousEveryHalfHour", scheduler.Nightly{Spec: "*/30 * * * *", TimeZone: "Europe/Paris"}, "2024-10-26 23:45",
			[]string{"2024-10-27 00:00", "2024-10-27 00:30", "2024-10-27 02:00"}},
		{"ParisLocation", scheduler.Nightly{Spec: "0 3 * * *", Location: mustZone(t, "Europe/Paris")}, "2024-07-01 00:00", []string{"2024-07-01 01:00"}},
		// America/New_York: back from EDT to EST at 02:00 on 2024-11-03,
		// forward at 02:00 on 2024-03-10.
		{"NewYorkAmbiguous", scheduler.Nightly{Spec: "30 1 * * *", TimeZone: "America/New_York"}, "2024-11-02 12:00",
			[]string{"2024-11-03 05:30", "2024-11-04 06:30"}},
		{"NewYorkGap", scheduler.Nightly{Spec: "30 2 * * *", TimeZone: "America/New_York"}, "2024-03-09 12:00",
			[]string{"2024-03-10 07:00", "2024-03-11 06:30"}},
		// America/Santiago changes at midnight: 2024-09-08 has no 00:00
		// (forward to 01:00 at 04:00 UTC); 2024-04-06 has 23:xx twice.
		{"SantiagoMidnightGap", scheduler.Nightly{Spec: "0 0 * * *", TimeZone: "America/Santiago"}, "2024-09-07 12:00",
			[]string{"2024-09-08 04:00", "2024-09-09 03:00"}},
		{"SantiagoAmbiguousAcrossMidnight", scheduler.Nightly{Spec: "30 23 * * *", TimeZone: "America/Santiago"}, "2024-04-06 12:00",
			[]string{"2024-04-07 02:30", "2024-04-08 03:30"}},
		{"SantiagoAfterTheFirstOccurrence", scheduler.Nightly{Spec: "30 23 * * *", TimeZone: "America/Santiago"}, "2024-04-07 03:10",
			[]string{"2024-04-08 03:30"}},
		// Australia/Lord_Howe shifts by 30 minutes: forward from 02:00 to
		// 02:30 on 2024-10-06 (15:30 UTC), back from 02:00 to 01:30 on
		// 2024-04-07 (15:00 UTC).
		{"LordHoweGap", scheduler.Nightly{Spec: "15 2 * * *", TimeZone: "Australia/Lord_Howe"}, "2024-10-05 12:00",
			[]string{"2024-10-05 15:30", "2024-10-06 15:15"}},
		{"LordHoweAmbiguous", scheduler.Nightly{Spec: "45 1 * * *", TimeZone: "Australia/Lord_Howe"}, "2024-04-06 12:00",
			[]string{"2024-04-06 14:45", "2024-04-07 15:15"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.nightly.Validate())
			at := utc(tt.after)
			var got []string
			for range tt.want {
				next, err := tt.nightly.Next(at)
				require.NoError(t, err)
				got = append(got, next.UTC().Format("2006-01-02 15:04"))
				at = next
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestNightly_NextEveryMinute checks, across a year of a zone with daylight
// saving time, that every-minute schedules see each minute of the wall
// clock once, and never go back in time.
func TestNightly_NextEveryMinute(t *testing.T) {
	n := scheduler.Nightly{Spec: "* * * * *", TimeZone: "Europe/Paris"}
	loc := mustZone(t, "Europe/Paris")
	at := time.Date(2024, 3, 31, 0, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	for range 4 * 60 {
		next, err := n.Next(at)
		require.NoError(t, err)
		require.True(t, next.After(at))
		wall := next.In(loc).Format("15:04")
		require.False(t, seen[wall], "wall time %s twice", wall)
		seen[wall] = true
		at = next
	}
	assert.False(t, seen["02:30"], "02:30 does not exist that day")
	assert.True(t, seen["03:00"])
	assert.True(t, strings.HasPrefix(at.In(loc).Format(time.RFC3339), "2024-03-31T06:00"), at.In(loc).Format(time.RFC3339))
}
