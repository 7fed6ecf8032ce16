// Package scheduler has the schedulers that decide when builds are
// requested, as Go values for ci.MasterConfig.Schedulers: Force, which a
// person (through the web UI or the API) or a program uses to start builds
// by name with properties.
package scheduler
