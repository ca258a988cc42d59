package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/cgroup"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/proc"
)

// errNotExist is runc's wording, which containerd and Podman match.
var errNotExist = errors.New("container does not exist")

// record is a container's state.json under --root/ID.
type record struct {
	ID     string `json:"id"`
	Bundle string `json:"bundle"`
	Rootfs string `json:"rootfs"`
	// PID and StartTime identify the container's process (start time: field 22 of /proc/PID/stat, so a reused
	// PID is told apart).
	PID         int               `json:"pid"`
	StartTime   uint64            `json:"start_time"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Config is the config.json the container was created from (exec uses its process defaults and seccomp
	// profile; delete its poststop hooks; start its poststart hooks).
	Config *specs.Spec `json:"config"`
	// Cgroups are the container's groups by hierarchy mount point ("" when it has none).
	Cgroups map[string]string `json:"cgroups,omitempty"`
	// CgroupPath is the resolved cgroupsPath; CgroupUnified the v2 mount point; CgroupV2Only a unified host.
	CgroupPath    string `json:"cgroup_path,omitempty"`
	CgroupUnified string `json:"cgroup_unified,omitempty"`
	CgroupV2Only  bool   `json:"cgroup_v2_only,omitempty"`
	// Namespaces are the CLONE_NEW* flags of the namespaces the container has of its own (exec joins them).
	Namespaces uintptr `json:"namespaces"`
	// Rootless is the runtime's mode at create.
	Rootless bool `json:"rootless,omitempty"`
	// Stopped is set by delete once the container is gone (never read back: the directory goes next).
	Stopped bool `json:"-"`
}

// cgroups returns the container's cgroups, or nil when it has none.
func (r *record) cgroups() *cgroup.Container {
	if len(r.Cgroups) == 0 {
		return nil
	}
	return cgroup.ContainerFrom(r.CgroupPath, r.Cgroups, r.CgroupUnified, r.CgroupV2Only)
}

// store is the state directory, --root.
type store struct{ root string }

// open makes sure the state directory exists (0700).
func (g *globals) store() (*store, error) {
	if err := os.MkdirAll(g.root, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", g.root, unwrapErr(err))
	}
	return &store{root: g.root}, nil
}

func (s *store) dir(id string) string { return filepath.Join(s.root, id) }

// handle is one container's state directory, locked (flock on its lock file) while it is held.
type handle struct {
	dir  string
	lock *os.File
	rec  *record
}

// lockFile is the lock taken by every command on a container: two commands on one ID never interleave.
const lockFile = "lock"

// reserve creates and locks a new container's directory; an existing one is "container with id exists".
func (s *store) reserve(id string) (*handle, error) {
	dir := s.dir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container with id exists: %s", id)
		}
		return nil, fmt.Errorf("state directory %s: %w", dir, unwrapErr(err))
	}
	h := &handle{dir: dir}
	if err := h.takeLock(true); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return h, nil
}

// takeLock opens the container's lock file and locks it. Only reserve creates the file: a command that finds an
// existing container must not, or it could put a lock file back into a directory that a failed create or a delete
// is removing (between RemoveAll's unlink of the old one and its rmdir), and the directory would stay.
func (h *handle) takeLock(create bool) error {
	flags := os.O_RDWR | unix.O_CLOEXEC
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(filepath.Join(h.dir, lockFile), flags, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errNotExist
		}
		return fmt.Errorf("lock %s: %w", h.dir, unwrapErr(err))
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("lock %s: %w", h.dir, err)
	}
	h.lock = f
	return nil
}

// load locks an existing container and reads its record. A directory without a record is a half-made container
// (its create was killed): errNotExist, with the handle still returned locked so that delete --force can remove it.
func (s *store) load(id string) (*handle, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	dir := s.dir(id)
	if _, err := os.Lstat(dir); err != nil {
		return nil, errNotExist
	}
	h := &handle{dir: dir}
	if err := h.takeLock(false); err != nil {
		if errors.Is(err, errNotExist) {
			if _, serr := os.Lstat(dir); serr == nil {
				// A directory without a lock file: a create killed between its mkdir and its lock (or one that
				// is right there now). Half-made, as below: delete --force removes it.
				return h, errNotExist
			}
		}
		return nil, err
	}
	// A delete that held the lock may have removed the directory meanwhile.
	if _, err := os.Stat(dir); err != nil {
		h.unlock()
		return nil, errNotExist
	}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return h, errNotExist
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return h, fmt.Errorf("container %s: bad state.json: %w", id, err)
	}
	h.rec = &r
	return h, nil
}

// unlock releases the lock.
func (h *handle) unlock() {
	if h.lock != nil {
		h.lock.Close()
		h.lock = nil
	}
}

// save writes the record atomically.
func (h *handle) save() error {
	b, err := json.Marshal(h.rec)
	if err != nil {
		return err
	}
	tmp := filepath.Join(h.dir, ".state.json")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save the container's state: %w", unwrapErr(err))
	}
	if err := os.Rename(tmp, filepath.Join(h.dir, "state.json")); err != nil {
		return fmt.Errorf("save the container's state: %w", unwrapErr(err))
	}
	return nil
}

// remove deletes the directory (the lock goes with it).
func (h *handle) remove() error {
	err := os.RemoveAll(h.dir)
	h.unlock()
	return err
}

// fifoPath is the exec FIFO: present from create until start, as runc's; its presence tells created from running.
func (h *handle) fifoPath() string { return filepath.Join(h.dir, "exec.fifo") }

// alive reports whether pid is the process that started at start and has not exited: a zombie is dead (proc.Alive),
// so a container whose process exited reads as stopped at once, even when its reaper is slow.
func alive(pid int, start uint64) bool { return pid > 0 && proc.Alive(pid, start) }

// status computes the container's OCI status.
func (h *handle) status() specs.ContainerState {
	r := h.rec
	if r == nil || !alive(r.PID, r.StartTime) {
		return specs.StateStopped
	}
	if _, err := os.Lstat(h.fifoPath()); err == nil {
		return specs.StateCreated
	}
	if cg := r.cgroups(); cg != nil && cg.Frozen() {
		return "paused"
	}
	return specs.StateRunning
}

// ociState is the state JSON: the spec's fields and runc's additions, which go-runc decodes.
type ociState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	PID         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// state returns the container's state JSON object with status.
func (h *handle) state(status specs.ContainerState) ociState {
	r := h.rec
	pid := r.PID
	if status == specs.StateStopped {
		pid = 0
	}
	return ociState{OCIVersion: specs.Version, ID: r.ID, PID: pid, Status: string(status), Bundle: r.Bundle,
		Rootfs: r.Rootfs, Created: r.Created, Owner: r.Owner, Annotations: r.Annotations}
}

// stateJSON is the state given to hooks on their standard input.
func (h *handle) stateJSON(status specs.ContainerState) []byte {
	st := specs.State{Version: specs.Version, ID: h.rec.ID, Status: status, Pid: h.rec.PID, Bundle: h.rec.Bundle,
		Annotations: h.rec.Annotations}
	if status == specs.StateStopped {
		st.Pid = 0
	}
	b, _ := json.Marshal(st)
	return b
}

// signal sends sig to the container's process through a pidfd, checked to still be that process.
func (h *handle) signal(sig syscall.Signal) error {
	r := h.rec
	fd, err := unix.PidfdOpen(r.PID, 0)
	if err != nil {
		return errors.New("container not running")
	}
	defer unix.Close(fd)
	if !alive(r.PID, r.StartTime) {
		return errors.New("container not running")
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errors.New("container not running")
		}
		return fmt.Errorf("kill the container's process: %w", err)
	}
	return nil
}

// waitGone waits until the container's process has exited (or timeout passes).
func (h *handle) waitGone(timeout time.Duration) bool {
	r := h.rec
	fd, err := unix.PidfdOpen(r.PID, 0)
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	if !alive(r.PID, r.StartTime) {
		return true
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

func unwrapErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
