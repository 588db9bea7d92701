package mountinfo

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Mount
		ok   bool
	}{
		{`36 35 98:0 /mnt1 /mnt/with\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue`, Mount{"/mnt/with space", "ext3", "/dev/root"}, true},
		{`53 27 254:0 /var/lib/x /var/lib/x rw,relatime - ext4 /dev/vda rw`, Mount{"/var/lib/x", "ext4", "/dev/vda"}, true},
		{`24 1 0:22 / /proc rw - proc`, Mount{}, false},
		{``, Mount{}, false},
	} {
		got, ok := parse(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
	if got := unescape(`a\134b\x`); got != `a\b\x` {
		t.Errorf("unescape: %q", got)
	}
}

func TestUnderProc(t *testing.T) {
	if ms := Under("/proc"); len(ms) == 0 || ms[len(ms)-1].Point != "/proc" {
		t.Errorf("mounts under /proc: %+v", ms)
	}
}
