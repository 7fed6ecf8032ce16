package ci

import (
	"context"
	"errors"
	"fmt"
)

// Test result categories, as Buildbot defines them: what the values of a
// set's results mean. Any other string is allowed.
const (
	// TestPassFail: each result says whether a test passed ("1") or
	// failed ("0"), with value unit TestUnitBoolean.
	TestPassFail = "pass_fail"
	// TestPassOnly: only passed tests are reported.
	TestPassOnly = "pass_only"
	// TestFailOnly: only failed tests are reported.
	TestFailOnly = "fail_only"
	// TestCodeIssue: issues tools found in the code (a kind of
	// TestFailOnly).
	TestCodeIssue = "code_issue"
	// TestPerformance: the values are performance figures.
	TestPerformance = "performance"
)

// TestUnitBoolean is the value unit of pass/fail results: "1" passed, "0"
// failed.
const TestUnitBoolean = "boolean"

// A TestResultSet is a set of related test results one step produced, as
// Buildbot's test_result_set: for example the test cases of one JUnit
// report. It is complete once all its results are stored.
type TestResultSet struct {
	ID int64
	// BuilderID is that of the build; the store sets it.
	BuilderID int64
	BuildID   int64
	StepID    int64
	// Description says where the results come from ("go test ./...").
	Description string
	// Category says what the values mean (TestPassFail and the other
	// Test* constants).
	Category string
	// ValueUnit is the unit of the values ("boolean", "ns", "B"...).
	ValueUnit string
	// TestsPassed and TestsFailed are the numbers of passed and failed
	// tests, nil when unknown (performance results, say).
	TestsPassed *int
	TestsFailed *int
	// Complete is true once every result is stored; it is never unset.
	Complete bool
}

// A TestResult is one result of a test result set.
type TestResult struct {
	ID    int64
	SetID int64
	// BuilderID is that of the set; the store sets it.
	BuilderID int64
	// TestName and TestCodePath name the test ("" for none); at least one
	// is set.
	TestName     string
	TestCodePath string
	// Line is the line of TestCodePath the result is about; 0 for none.
	Line int
	// DurationNS is how long the test ran, in nanoseconds; nil if unknown.
	DurationNS *int64
	// Value is the result, read as the set's category and unit say.
	Value string
}

// Validate checks what a store needs of a result: a value's owner named.
func (r *TestResult) Validate() error {
	if r.TestName == "" && r.TestCodePath == "" {
		return errors.New("a test result needs a test name or a code path")
	}
	if r.Line < 0 {
		return fmt.Errorf("test result line %d is negative", r.Line)
	}
	return nil
}

// A TestResultSetQuery selects test result sets. Zero fields do not
// filter.
type TestResultSetQuery struct {
	Query
	BuilderID int64
	BuildID   int64
	StepID    int64
	// Complete, when set, keeps only complete (true) or incomplete (false)
	// sets.
	Complete *bool
}

// TestResultStore stores the test results steps record. A set is added
// empty and incomplete, filled by one or more AddTestResults, then
// completed; retention deletes sets and results with their build.
type TestResultStore interface {
	// AddTestResultSet stores set, incomplete, and sets set.ID and
	// set.BuilderID (from the build). The build and the step must exist,
	// the step belonging to the build, or it returns ErrNotFound.
	AddTestResultSet(ctx context.Context, set *TestResultSet) error
	// AddTestResults stores results in the set, in one transaction, and
	// sets their IDs, SetID and BuilderID. Each must pass Validate. It
	// returns ErrNotFound if the set does not exist and ErrConflict if it
	// is complete.
	AddTestResults(ctx context.Context, setID int64, results []*TestResult) error
	// CompleteTestResultSet marks the set complete with the numbers of
	// passed and failed tests (nil: unknown). It returns ErrConflict if
	// the set is already complete.
	CompleteTestResultSet(ctx context.Context, setID int64, passed, failed *int) error
	GetTestResultSet(ctx context.Context, id int64) (*TestResultSet, error)
	// ListTestResultSets returns a page of the sets q selects, by ID, and
	// how many it selects in all.
	ListTestResultSets(ctx context.Context, q TestResultSetQuery) ([]*TestResultSet, int, error)
	// ListTestResults returns a page of a set's results, by ID, and how
	// many it has. A set that does not exist has none.
	ListTestResults(ctx context.Context, setID int64, q Query) ([]*TestResult, int, error)
	// TestNames returns a page of the distinct test names of a builder's
	// results, in byte order, and how many there are. Query.Desc reverses
	// the order.
	TestNames(ctx context.Context, builderID int64, q Query) ([]string, int, error)
	// TestCodePaths is TestNames for the results' code paths.
	TestCodePaths(ctx context.Context, builderID int64, q Query) ([]string, int, error)
}

// testResultBatch is how many results AddTestResults stores per
// transaction.
const testResultBatch = 1000

// AddTestResults records a set of test results of the step, as Buildbot's
// test result submitter: the set is stored, then its results in batches,
// then it is completed. set's BuildID and StepID are the step's; its
// Category and ValueUnit say what the values mean. When set.TestsPassed and
// set.TestsFailed are nil, they are counted from the results as Buildbot
// does: "1" passed and "0" failed in a TestPassFail set of unit
// TestUnitBoolean, every result passed in a TestPassOnly set, failed in a
// TestFailOnly or TestCodeIssue set, and unknown in other sets. It returns
// the stored set. The results' IDs are set.
func (s *StepRun) AddTestResults(ctx context.Context, set TestResultSet, results []*TestResult) (*TestResultSet, error) {
	if set.Category == "" {
		return nil, errors.New("add test results: the set has no category")
	}
	for i, r := range results {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("add test results: result %d: %w", i, err)
		}
	}
	if set.TestsPassed == nil && set.TestsFailed == nil {
		set.TestsPassed, set.TestsFailed = countTests(set.Category, set.ValueUnit, results)
	}
	passed, failed := set.TestsPassed, set.TestsFailed
	set.ID, set.BuildID, set.StepID, set.Complete = 0, s.build.rec.ID, s.rec.ID, false
	set.TestsPassed, set.TestsFailed = nil, nil
	// The records are the build's: they are stored even as the build is
	// being stopped, as logs are.
	ctx = context.WithoutCancel(ctx)
	st := s.build.m.store
	if err := st.AddTestResultSet(ctx, &set); err != nil {
		return nil, fmt.Errorf("add test results: %w", err)
	}
	for len(results) > 0 {
		n := min(len(results), testResultBatch)
		if err := st.AddTestResults(ctx, set.ID, results[:n]); err != nil {
			return nil, fmt.Errorf("add test results: %w", err)
		}
		results = results[n:]
	}
	if err := st.CompleteTestResultSet(ctx, set.ID, passed, failed); err != nil {
		return nil, fmt.Errorf("add test results: %w", err)
	}
	set.Complete, set.TestsPassed, set.TestsFailed = true, passed, failed
	return &set, nil
}

// countTests counts passed and failed tests as Buildbot's test result
// submitter; nil when the category does not tell.
func countTests(category, unit string, results []*TestResult) (passed, failed *int) {
	var p, f int
	switch {
	case category == TestPassFail && unit == TestUnitBoolean:
		for _, r := range results {
			switch r.Value {
			case "1":
				p++
			case "0":
				f++
			}
		}
	case category == TestPassOnly:
		p = len(results)
	case category == TestFailOnly || category == TestCodeIssue:
		f = len(results)
	default:
		return nil, nil
	}
	return &p, &f
}
