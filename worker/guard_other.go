//go:build !unix

package worker

import "errors"

// killGroup does nothing where process groups are not Unix's.
func killGroup(pgid int) error { return errors.New("process groups are not supported") }

// startGuard runs no guard where process groups are not Unix's.
func startGuard(args []string) (*guardClient, func() error, error) {
	return nil, func() error { return nil }, nil
}
