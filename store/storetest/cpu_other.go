//go:build !unix

package storetest

import "time"

// processCPU is not measured here: the benchmark reports 0 CPU per op.
func processCPU() time.Duration { return 0 }
