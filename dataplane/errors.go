package dataplane

import "errors"

// ErrClosed is returned by Device.Read and Device.Write after Close.
var ErrClosed = errors.New("device closed")
