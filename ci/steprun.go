package ci

// StepRun is one step running in one build: what a Step's Run works
// through.
type StepRun struct {
}

// Master runs builds.
type Master struct{}
