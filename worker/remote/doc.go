// Package remote is the master's side of network workers.
package remote
