// Package webui is Kiln's web application: one http.Handler that serves a
// master's JSON API under /api/v2, in the shapes of Buildbot's data API so
// that scripts written against Buildbot keep working.
//
// Handler returns the handler for a master; Server is a ci.Service that
// listens on the master's HTTP address and serves it, with more handlers
// (change hooks) mounted beside it.
//
// # API
//
//	GET /api/v2/builders                  all builders
//	GET /api/v2/builders/{builder}        one builder, by ID or name
//	GET /api/v2/builders/{builder}/builds the builder's builds
//	GET /api/v2/builds                    builds
//	GET /api/v2/builds/{id}               one build
//	GET /api/v2/builds/{id}/steps         the steps of a build
//
// Answers are {"<collection>": [...], "meta": {"total": N}}, as Buildbot's.
// Lists take ?limit=, ?offset= and ?order= (the ID field, "-" first for
// newest first); builds also take ?builderid=, ?workerid= and ?complete=.
// Times are Unix seconds; fields of unfinished records are null. Errors
// answer {"error": "<one line>"} with the status that says what was wrong.
package webui
