package ci

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Result is how a build, a step or a build request ended. The codes and names
// are Buildbot's, so that stored results and API answers mean the same thing
// in both.
type Result int

// The results, with Buildbot's codes.
const (
	Success   Result = 0
	Warnings  Result = 1
	Failure   Result = 2
	Skipped   Result = 3
	Exception Result = 4
	Retry     Result = 5
	Cancelled Result = 6
)

var resultNames = [...]string{"success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"}

// String returns Buildbot's lower-case name of r ("success", "failure", ...).
func (r Result) String() string {
	if r >= 0 && int(r) < len(resultNames) {
		return resultNames[r]
	}
	return fmt.Sprintf("result(%d)", int(r))
}

// Valid reports whether r is one of the seven known results.
func (r Result) Valid() bool { return r >= 0 && int(r) < len(resultNames) }

// ParseResult returns the result named s (case-insensitive), as written by
// String.
func ParseResult(s string) (Result, error) {
	for i, n := range resultNames {
		if strings.EqualFold(n, s) {
			return Result(i), nil
		}
	}
	return 0, fmt.Errorf("unknown result %q", s)
}

var _ json.Marshaler = Result(0)

// MarshalJSON encodes r as its code, as Buildbot's data API does.
func (r Result) MarshalJSON() ([]byte, error) { return json.Marshal(int(r)) }

// worstOrder ranks results from least to most severe, as Buildbot's
// worst_status does: SKIPPED counts for less than SUCCESS.
var worstOrder = [...]Result{Skipped, Success, Warnings, Failure, Exception, Retry, Cancelled}

func severity(r Result) int {
	for i, w := range worstOrder {
		if w == r {
			return i
		}
	}
	return len(worstOrder)
}

// Worst returns the more severe of a and b, in Buildbot's order:
// SKIPPED < SUCCESS < WARNINGS < FAILURE < EXCEPTION < RETRY < CANCELLED.
func Worst(a, b Result) Result {
	if severity(b) > severity(a) {
		return b
	}
	return a
}
