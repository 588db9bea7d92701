package runtime

// PeakMemory returns the sandbox's memory high-water mark in bytes, the
// PeakMemory of Usage, reading only that counter through a descriptor
// opened once (cgroups.PeakReader). Contexts use it after every call (see
// peakReader).
func (sb *Sandbox) PeakMemory() (uint64, error) { return sb.peak.Read() }
