package ci

import "testing"

func TestBuildResult(t *testing.T) {
	tests := []struct {
		name      string
		opts      StepOptions
		step      Result
		prev      Result
		want      Result
		terminate bool
	}{
		{"success keeps", StepOptions{}, Success, Success, Success, false},
		{"failure flunks", StepOptions{}, Failure, Success, Failure, false},
		{"failure halts", StepOptions{HaltOnFailure: true}, Failure, Success, Failure, true},
		{"warn on failure", StepOptions{WarnOnFailure: true}, Failure, Success, Warnings, false},
		{"ignore failure", StepOptions{IgnoreFailure: true}, Failure, Success, Success, false},
		{"ignore failure still halts", StepOptions{IgnoreFailure: true, HaltOnFailure: true}, Failure, Success, Success, true},
		{"warnings warn", StepOptions{}, Warnings, Success, Warnings, false},
		{"ignore warnings", StepOptions{IgnoreWarnings: true}, Warnings, Success, Success, false},
		{"flunk on warnings", StepOptions{FlunkOnWarnings: true}, Warnings, Success, Failure, false},
		{"exception stops", StepOptions{}, Exception, Success, Exception, true},
		{"retry stops", StepOptions{}, Retry, Warnings, Retry, true},
		{"cancelled stops", StepOptions{}, Cancelled, Failure, Cancelled, true},
		{"skipped keeps", StepOptions{}, Skipped, Warnings, Warnings, false},
		{"worst of previous", StepOptions{}, Warnings, Failure, Failure, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, term := buildResult(tt.opts, tt.step, tt.prev)
			if got != tt.want || term != tt.terminate {
				t.Errorf("buildResult = %v, %v; want %v, %v", got, term, tt.want, tt.terminate)
			}
		})
	}
}

func TestWorst(t *testing.T) {
	order := []Result{Skipped, Success, Warnings, Failure, Exception, Retry, Cancelled}
	for i, a := range order {
		for j, b := range order {
			want := a
			if j > i {
				want = b
			}
			if got := Worst(a, b); got != want {
				t.Errorf("Worst(%v, %v) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func TestResultNames(t *testing.T) {
	for i, name := range []string{"success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"} {
		r := Result(i)
		if r.String() != name {
			t.Errorf("Result(%d) = %q, want %q", i, r.String(), name)
		}
		if p, err := ParseResult(name); err != nil || p != r {
			t.Errorf("ParseResult(%q) = %v, %v", name, p, err)
		}
	}
	if _, err := ParseResult("great"); err == nil {
		t.Error("ParseResult accepted an unknown name")
	}
}
