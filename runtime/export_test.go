package runtime

// NewIDForTest names a new sandbox of e's state directory, for tests that
// fake a dead vial's leftovers.
func (e *Engine) NewIDForTest() string { return e.newID() }
