// Package state keeps the record of running sandboxes: one directory per sandbox under the caller's state root
// ($XDG_RUNTIME_DIR/caisson, or /tmp/caisson-UID when that is unset), holding state.json, the control socket and,
// for detached sandboxes, the log. The supervising caisson process creates the directory and removes it when the
// sandbox ends; a directory left by a caisson that was killed is recognised as stale (its process is gone, is a
// zombie not reaped yet, or its PID now belongs to another process: the start time differs; see package proc) and
// removed by the next command that lists them.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/proc"
	"golang.org/x/sys/unix"
)

// Record describes one sandbox.
type Record struct {
	Name string `json:"name"`
	// PID and StartTime identify the supervising caisson process on the host (StartTime is field 22 of
	// /proc/PID/stat, so a reused PID is told apart; see proc.Alive).
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	// InitPID is the host PID of the sandbox's init, CommandPID that of its command once it started.
	InitPID    int       `json:"init_pid"`
	CommandPID int       `json:"command_pid,omitempty"`
	Created    time.Time `json:"created"`
	Command    []string  `json:"command"`
	Net        string    `json:"net"`
	Ports      []string  `json:"ports,omitempty"`
	Detached   bool      `json:"detached,omitempty"`
	// Joined names the sandbox whose namespaces this one shares, if any.
	Joined string `json:"joined,omitempty"`
	// Posture is the sandbox's --security posture: `caisson exec` relays its stdio in the strict one.
	Posture string `json:"posture,omitempty"`
}

// ValidName reports whether name can name a sandbox: it is a directory name and shows up in ps, so letters,
// digits, '_', '.' and '-', at most 64 bytes, starting with a letter or digit.
func ValidName(name string) error {
	ok := len(name) > 0 && len(name) <= 64
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		ok = ok && (alnum || (i > 0 && (c == '_' || c == '.' || c == '-')))
	}
	if !ok {
		return fmt.Errorf("invalid sandbox name %q (letters, digits, '_', '.', '-'; at most 64; not starting with a punctuation mark)", name)
	}
	return nil
}

// Root returns the caller's state root, creating it 0700. An existing root that is not a directory owned by the
// caller with mode 0700 is refused: another user could read or plant sandbox records there.
func Root() (string, error) {
	dir := ""
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		if st, err := os.Stat(x); err == nil && st.IsDir() {
			dir = filepath.Join(x, "caisson")
		}
	}
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "caisson-"+strconv.Itoa(os.Getuid()))
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("state directory %s: %w", dir, err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("state directory %s: %w", dir, err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || int(sys.Uid) != os.Getuid() || st.Mode().Perm() != 0o700 {
		return "", fmt.Errorf("state directory %s is not a directory of yours with mode 0700 (owner uid %d, mode %v): remove it or fix it", dir, sys.Uid, st.Mode())
	}
	return dir, nil
}

// Entry is the state directory of a sandbox this process supervises. Save and Remove may be called from different
// goroutines; a Save after Remove does nothing.
type Entry struct {
	Dir    string
	Record Record

	mu      sync.Mutex
	removed bool
	lock    *os.File // the directory, open and locked (flock) while this process supervises the sandbox, or nil
}

// ErrNameInUse is returned by Create when a live sandbox already has the name.
var ErrNameInUse = errors.New("name in use")

// Create reserves name for rec and writes its record. A stale directory of the same name is cleaned first.
func Create(rec Record) (*Entry, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, rec.Name)
	for attempt := 0; ; attempt++ {
		err = os.Mkdir(dir, 0o700)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || attempt > 0 {
			return nil, fmt.Errorf("state directory %s: %w", dir, err)
		}
		if old, rerr := read(dir); rerr == nil && Alive(old) {
			return nil, fmt.Errorf("a sandbox named %q is running (pid %d): %w", rec.Name, old.PID, ErrNameInUse)
		} else if rerr != nil && !staleDir(dir) {
			return nil, fmt.Errorf("a sandbox named %q is being created: %w", rec.Name, ErrNameInUse)
		}
		_ = os.RemoveAll(dir)
	}
	e := &Entry{Dir: dir, Record: rec, lock: lockDir(dir)}
	if err := e.Save(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return e, nil
}

// Save rewrites the record atomically.
func (e *Entry) Save() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.removed {
		return nil
	}
	b, err := json.MarshalIndent(e.Record, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(e.Dir, ".state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save the sandbox's state: %w", err) // the error names the file
	}
	if err := os.Rename(tmp, filepath.Join(e.Dir, "state.json")); err != nil {
		return fmt.Errorf("save the sandbox's state: %w", err)
	}
	return nil
}

// Remove deletes the state directory, once: later calls do nothing.
func (e *Entry) Remove() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.removed {
		return // once only: by now the name may belong to a new sandbox with the same directory
	}
	e.removed = true
	_ = os.RemoveAll(e.Dir)
	if e.lock != nil {
		e.lock.Close()
	}
}

// lockDir opens dir and takes an exclusive flock on it, held until the descriptor is closed: by Remove, or by the
// kernel when this process dies. Sweep reads a locked directory as live without reading its record. nil when it
// cannot: the directory is then judged by its record, as those of older versions are.
func lockDir(dir string) *os.File {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil {
		unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), dir)
}

// lockedByOther reports whether another process holds dir's lock: its supervising caisson is alive.
func lockedByOther(dir string) bool {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB) == unix.EWOULDBLOCK
}

// Socket is the path of the control socket.
func (e *Entry) Socket() string { return filepath.Join(e.Dir, "control.sock") }

// Log is the path of a detached sandbox's log.
func (e *Entry) Log() string { return filepath.Join(e.Dir, "log") }

// SocketPath returns the control socket path of the sandbox named name.
func SocketPath(name string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, name, "control.sock"), nil
}

// LogPath returns the log path of the sandbox named name.
func LogPath(name string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, name, "log"), nil
}

func read(dir string) (Record, error) {
	var r Record
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return r, err
	}
	err = json.Unmarshal(b, &r)
	return r, err
}

// staleDir reports whether a directory without a readable record is old enough (a few seconds) to be leftover
// rather than being created right now.
func staleDir(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && time.Since(st.ModTime()) > 5*time.Second
}

// Alive reports whether the record's supervising caisson process is still the one that wrote it and still runs
// (proc.Alive: neither gone, nor its PID reused, nor exited and waiting to be reaped).
func Alive(r Record) bool { return proc.Alive(r.PID, r.StartTime) }

// List returns the live sandboxes, sorted by name, and removes stale directories.
func List() ([]Record, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	out, err := sweep(root, true)
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Sweep removes the state directories whose supervising caisson is gone without removing them (killed with
// SIGKILL): `caisson run` calls it as it creates its own, so such a directory lasts until the caller's next caisson
// command.
func Sweep() error {
	root, err := Root()
	if err != nil {
		return err
	}
	_, err = sweep(root, false)
	return err
}

// sweep removes root's stale directories and, with records, returns the records of the live ones. A directory without
// a readable record is removed only once it is a few seconds old (it may be being created). Without records, a
// directory whose lock its caisson holds is live and its record is not read: the sweep of every run then costs a
// few system calls per sandbox running, not a JSON record each.
func sweep(root string, records bool) ([]Record, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var live []Record
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if !records && lockedByOther(dir) {
			continue
		}
		r, err := read(dir)
		if err != nil {
			if staleDir(dir) {
				_ = os.RemoveAll(dir)
			}
			continue
		}
		if !Alive(r) {
			_ = os.RemoveAll(dir)
			continue
		}
		live = append(live, r)
	}
	return live, nil
}

// Lookup returns the live sandbox named name.
func Lookup(name string) (Record, error) {
	if err := ValidName(name); err != nil {
		return Record{}, err
	}
	root, err := Root()
	if err != nil {
		return Record{}, err
	}
	dir := filepath.Join(root, name)
	r, err := read(dir)
	if err != nil || !Alive(r) {
		if err == nil {
			_ = os.RemoveAll(dir)
		}
		return Record{}, fmt.Errorf("no running sandbox named %q (see 'caisson ps')", name)
	}
	return r, nil
}
