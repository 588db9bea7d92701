package runtime

import "github.com/vial-run/vial/cgroups"

// PeakMemory returns the sandbox's memory high-water mark in bytes, the
// PeakMemory of Usage, reading only that counter. Contexts use it after
// every call (see peakReader).
func (sb *Sandbox) PeakMemory() (uint64, error) { return cgroups.PeakMemory(sb.ID) }
