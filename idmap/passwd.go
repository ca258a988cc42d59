package idmap

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strconv"
)

// Passwd is a passwd(5) file read once, matched by the rules of Go's os/user without cgo (the lookup caisson's
// static binary makes): blanks around a line trimmed, blank and '#' lines skipped, at least six ':' per line, no
// NIS '+'/'-' entries, numeric uid and gid fields, the first matching line wins. os/user reads the whole file again
// for every name it looks up, and /etc/subuid and /etc/subgid may name many users: one read serves a whole start.
type Passwd struct {
	users  []passwdUser
	byName map[string]string // name -> uid field of its first line: /etc/subuid may name thousands of users
}

// passwdUser is one usable line of a passwd file.
type passwdUser struct {
	name string
	uid  string // the field as written: os/user matches a uid by its text
}

// maxPasswdLine bounds the memory one line may take; os/user accepts longer lines, which hold no account anyone
// logs in with.
const maxPasswdLine = 1 << 20

// ReadPasswd reads path. An unreadable or missing file yields an empty database, as os/user then finds no user.
func ReadPasswd(path string) *Passwd {
	f, err := os.Open(path)
	if err != nil {
		return &Passwd{byName: map[string]string{}}
	}
	defer f.Close()
	return ParsePasswd(f)
}

// ParsePasswd reads a passwd file from r; it stops at the first read error, keeping the lines before it.
func ParsePasswd(r io.Reader) *Passwd {
	p := &Passwd{byName: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxPasswdLine) // grown for a longer line, up to the bound
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' || bytes.Count(line, []byte{':'}) < 6 {
			continue
		}
		f := bytes.SplitN(line, []byte{':'}, 7)
		if len(f[0]) == 0 || f[0][0] == '+' || f[0][0] == '-' || !isInt(f[2]) || !isInt(f[3]) {
			continue
		}
		u := passwdUser{name: string(f[0]), uid: string(f[2])}
		p.users = append(p.users, u)
		if _, dup := p.byName[u.name]; !dup {
			p.byName[u.name] = u.uid
		}
	}
	return p
}

// isInt reports whether b parses as strconv.Atoi accepts it, as os/user requires of the uid and gid fields.
func isInt(b []byte) bool {
	_, err := strconv.Atoi(string(b))
	return err == nil
}

// UID returns the uid of the first line for name. Its signature fits Parse's resolve argument and
// PlanOptions.Resolve.
func (p *Passwd) UID(name string) (uint32, bool) {
	uid, ok := p.byName[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(uid, 10, 32)
	if err != nil {
		return 0, false // a uid os/user accepts but no uint32 is ("-1", "+5", too large)
	}
	return uint32(n), true
}

// Name returns the user name of the first line whose uid field reads uid in decimal.
func (p *Passwd) Name(uid uint32) (string, bool) {
	s := strconv.FormatUint(uint64(uid), 10)
	for _, u := range p.users {
		if u.uid == s {
			return u.name, true
		}
	}
	return "", false
}
