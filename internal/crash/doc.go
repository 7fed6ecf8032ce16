// Package crash holds the fault-injection test of the master: a master
// process killed with SIGKILL again and again under a stream of webhook
// deliveries and forced builds loses nothing it acknowledged. It has no code
// of its own.
package crash
