package poller

import "errors"

// Errors that Add, Arm and Del wrap, on every platform.
var (
	// ErrClosed: the poller is closed.
	ErrClosed = errors.New("poller closed")
	// ErrRegistered: Add was given an fd that is already registered.
	ErrRegistered = errors.New("fd already registered")
	// ErrNotRegistered: Arm or Del was given an fd that is not registered.
	ErrNotRegistered = errors.New("fd not registered")
)
