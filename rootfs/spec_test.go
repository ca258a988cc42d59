package rootfs

import "testing"

func TestParseBind(t *testing.T) {
	for _, tc := range []struct {
		name, in, src, dst string
		err                bool
	}{
		{"src only", "/data", "/data", "/data", false},
		{"src and dst", "/a:/b", "/a", "/b", false},
		{"relative src", "rel:/b", "rel", "/b", false},
		{"dst cleaned", "/a:/b/../c/", "/a", "/c", false},
		{"escaped colon", `/x\:y:/z\:w`, "/x:y", "/z:w", false},
		{"escaped backslash", `/x\\:/y`, `/x\`, "/y", false},
		{"spaces, commas and quotes", `/a b,c"d:/e f`, `/a b,c"d`, "/e f", false},
		{"two colons", "/a:/b:/c", "", "", true},
		{"empty", "", "", "", true},
		{"empty dst", "/a:", "", "", true},
		{"relative dst", "/a:b", "", "", true},
		{"dangling backslash", `/a\`, "", "", true},
		{"bad escape", `/a\n`, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst, err := ParseBind(tc.in)
			if (err != nil) != tc.err || src != tc.src || dst != tc.dst {
				t.Errorf("ParseBind(%q) = %q, %q, %v", tc.in, src, dst, err)
			}
		})
	}
}

func TestParseTmpfs(t *testing.T) {
	for _, tc := range []struct {
		name, in, dst string
		size          int64
		err           bool
	}{
		{"plain", "/scratch", "/scratch", 0, false},
		{"size bytes", "/s:size=4096", "/s", 4096, false},
		{"size k", "/s:size=1k", "/s", 1024, false},
		{"size M", "/s:size=2M", "/s", 2 << 20, false},
		{"size g", "/s:size=1g", "/s", 1 << 30, false},
		{"zero", "/s:size=0", "", 0, true},
		{"bogus", "/s:size=123bogus", "", 0, true},
		{"negative", "/s:size=-12345678", "", 0, true},
		{"leading space", "/s:size= 12", "", 0, true},
		{"2^64", "/s:size=18446744073709551616", "", 0, true},
		{"overflow with suffix", "/s:size=9223372036854775807k", "", 0, true},
		{"suffix only", "/s:size=k", "", 0, true},
		{"unknown option", "/s:mode=0700", "", 0, true},
		{"relative", "s", "", 0, true},
		{"too many parts", "/s:size=1:x", "", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, size, err := ParseTmpfs(tc.in)
			if (err != nil) != tc.err || dst != tc.dst || size != tc.size {
				t.Errorf("ParseTmpfs(%q) = %q, %d, %v", tc.in, dst, size, err)
			}
		})
	}
}
