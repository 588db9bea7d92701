package lazyre

import (
	"sync"
	"testing"
)

func TestRegexp(t *testing.T) {
	re := New(`^[a-z][a-z0-9-]{0,3}$`)
	if re.String() != `^[a-z][a-z0-9-]{0,3}$` {
		t.Errorf("String() = %q", re.String())
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, c := range []struct {
				s    string
				want bool
			}{{"a", true}, {"ab-1", true}, {"ab-12", false}, {"1a", false}, {"", false}} {
				if got := re.MatchString(c.s); got != c.want {
					t.Errorf("MatchString(%q) = %v, want %v", c.s, got, c.want)
				}
			}
		})
	}
	wg.Wait()
}

func TestInvalidPanicsOnFirstUse(t *testing.T) {
	re := New(`(`) // no panic here
	defer func() {
		if recover() == nil {
			t.Error("an invalid expression did not panic on first use")
		}
	}()
	re.MatchString("x")
}
