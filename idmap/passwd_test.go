package idmap

import (
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"
)

func TestParsePasswd(t *testing.T) {
	p := ParsePasswd(strings.NewReader(strings.Join([]string{
		"# comment:x:1:1::/:/bin/sh",
		"",
		"  alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash  ",
		"bob:x:1001:1001::/home/bob", // five ':' only: skipped
		"+nis:x:1002:1002::/:/bin/sh",
		"-nis:x:1003:1003::/:/bin/sh",
		":x:1004:1004::/:/bin/sh",
		"carol:x:abc:1005::/:/bin/sh",
		"dave:x:1006:gid::/:/bin/sh",
		"erin:x:1007:1007::/:/bin/sh",
		"erin:x:1008:1008::/:/bin/sh",  // a second line for a name: the first wins
		"alias:x:1000:1000::/:/bin/sh", // a second name for a uid: the first wins
		"neg:x:-1:1::/:/bin/sh",        // os/user accepts it; it is no uint32
		"big:x:4294967296:1::/:/bin/sh",
		"plus:x:+1009:1::/:/bin/sh", // os/user accepts it; it is no uid, by name or by number
		"last:x:1010:1010::/:/bin/sh",
	}, "\n")))
	uids := map[string]struct {
		uid uint32
		ok  bool
	}{
		"alice": {1000, true}, "bob": {}, "+nis": {}, "-nis": {}, "carol": {}, "dave": {}, "erin": {1007, true},
		"alias": {1000, true}, "neg": {}, "big": {}, "plus": {}, "last": {1010, true}, "nobody": {},
	}
	for name, want := range uids {
		if uid, ok := p.UID(name); uid != want.uid || ok != want.ok {
			t.Errorf("UID(%q) = %d, %v; want %d, %v", name, uid, ok, want.uid, want.ok)
		}
	}
	names := map[uint32]string{1000: "alice", 1007: "erin", 1008: "erin", 1009: "", 1010: "last", 1002: "", 0: ""}
	for uid, want := range names {
		if name, ok := p.Name(uid); name != want || ok != (want != "") {
			t.Errorf("Name(%d) = %q, %v; want %q", uid, name, ok, want)
		}
	}
}

func TestReadPasswdMissing(t *testing.T) {
	p := ReadPasswd(t.TempDir() + "/none")
	if _, ok := p.UID("root"); ok {
		t.Fatal("a missing file found a user")
	}
}

// TestPasswdMatchesOSUser checks every account of this machine's /etc/passwd against os/user, whose lookup the
// single read replaces.
func TestPasswdMatchesOSUser(t *testing.T) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatalf("read /etc/passwd: %v", err)
	}
	p := ReadPasswd("/etc/passwd")
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 {
			continue
		}
		n++
		if u, err := user.Lookup(f[0]); err == nil {
			want, perr := strconv.ParseUint(u.Uid, 10, 32)
			if got, ok := p.UID(f[0]); ok != (perr == nil) || got != uint32(want) {
				t.Errorf("UID(%q) = %d, %v; os/user says %s", f[0], got, ok, u.Uid)
			}
		} else if got, ok := p.UID(f[0]); ok {
			t.Errorf("UID(%q) = %d; os/user finds no such user", f[0], got)
		}
		if id, err := strconv.ParseUint(f[2], 10, 32); err == nil {
			u, err := user.LookupId(f[2])
			got, ok := p.Name(uint32(id))
			if (err == nil) != ok || (err == nil && u.Username != got) {
				t.Errorf("Name(%d) = %q, %v; os/user: %v %v", id, got, ok, u, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("/etc/passwd has no account")
	}
}
