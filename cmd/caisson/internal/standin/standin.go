// Package standin finds, for `caisson run --overlay` with fuse-overlayfs, the entries of the lower tree that the
// caller cannot read: the files and directories that the sandbox sees as stand-ins (rootfs.StandIn: empty, root's,
// writable after copy-up). It runs in caisson's parent process, as the caller, on the host.
//
// Searching a whole system takes seconds (every entry is stat'ed), so the result is kept in a cache file and the
// next runs only check it, in well under a millisecond:
//
//   - every entry listed is looked at again (stat; access(2) only when its mode bits grant reading, to catch an ACL
//     that denies): one the caller can read now by its mode, owner or group, or that is gone, is dropped. An ACL
//     added later that grants the caller what the bits deny is seen at the next search of everything only;
//   - the directories that lead to entries, the root and the root's directories are watched: when one of them
//     changed (its mtime or inode), its entries are looked at again, and directories created in it since the
//     last search are searched whole;
//   - a new search of everything happens when the cache is missing or was made for other ids or groups.
//
// What is not searched: directories the caller or its subordinate ids own (what is in them is the caller's), the
// directories the sandbox covers with its own (/proc, /sys, /dev, /run, /tmp), pseudo, FUSE and network file
// systems. An entry whose owner is the caller or one of its subordinate ids is never a stand-in (the sandbox
// reads it with those ids). Symlinks, devices, sockets and FIFOs are left as they are.
package standin

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Options say whose view is searched and where the result is kept.
type Options struct {
	// Root is the lower tree: "/" for the host view, or a --rootfs directory.
	Root string
	// UID is the caller's uid; Groups are its gid and supplementary groups.
	UID    uint32
	Groups []uint32
	// Owned are the caller's subordinate uids: their entries are the caller's, never stand-ins.
	Owned []idmap.Range
	// CacheDir is where the list is kept ("" to keep nothing: then every run searches everything).
	CacheDir string
	// Notify, when set, is told in one line that a search of everything starts (it takes seconds).
	Notify io.Writer
	// access reports whether the caller has the access mode (unix.R_OK, X_OK) to name in dirfd; nil is
	// faccessat(2) with the caller's effective ids. Unit tests replace it.
	access func(dirfd int, name string, mode uint32) bool
}

// Result is what Find found, and how.
type Result struct {
	// StandIns are the entries and the directories leading to them, for rootfs.Spec.StandIns.
	StandIns []rootfs.StandIn
	// Searched is true when everything was searched (no usable cache); Took is how long Find took.
	Searched bool
	Took     time.Duration
	// Cache is the cache file ("" when none could be kept); CacheErr says why it could not be written.
	Cache    string
	CacheErr error
}

// cacheVersion changes when the cache's meaning does: an older file is searched anew.
const cacheVersion = 1

// cacheFile is the cache's content.
type cacheFile struct {
	Version int    `json:"version"`
	Key     string `json:"key"`
	// Searched is when the last search of everything began (ns since the epoch), TookMS how long it took.
	Searched int64 `json:"searched"`
	TookMS   int64 `json:"took_ms"`
	// Entries maps each entry (path relative to the root) to its stand-in kind.
	Entries map[string]string `json:"entries"`
	// Watch maps each watched directory ("" is the root) to what it was when last looked at.
	Watch map[string]stamp `json:"watch"`
}

// stamp identifies a directory's state (a new entry, a removed or renamed one changes its mtime) and says when
// the directory was last looked at.
type stamp struct {
	Mtime int64  `json:"m"`
	Ino   uint64 `json:"i"`
	// Looked is when the directory was last looked at (ns): what was born in it later is searched whole.
	Looked int64 `json:"l"`
}

// clockSlack covers the coarse clock of file time stamps (a jiffy) and a directory changed while it is read: a
// directory whose mtime is that close to when it was looked at is looked at again next time.
const clockSlack = int64(time.Second)

// finder holds one Find call's state.
type finder struct {
	o      Options
	root   int
	skip   map[string]bool // entries (relative paths) never searched; nil until needed
	groups map[uint32]bool
	mu     sync.Mutex
	found  map[string]string // relative path -> kind
	// checking is set while the listed entries are checked (see can).
	checking bool
	// dirStats holds the watched directories' stats taken in this run, for check to reuse.
	dirStats map[string]*unix.Statx_t
}

// workers bounds the directories read at once during a search (it is I/O-bound when the caches are cold).
const workers = 8

// CachePath returns the cache file for root under dir.
func CachePath(dir, root string) string {
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(dir, "standins-"+hex.EncodeToString(sum[:8])+".json")
}

// Find returns the stand-ins of o.Root for the caller, from the cache when it is usable, and updates the cache.
func Find(o Options) (Result, error) {
	start := time.Now()
	root, err := unix.Open(o.Root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Result{}, fmt.Errorf("stand-ins: %s: %w", o.Root, err)
	}
	defer unix.Close(root)
	f := &finder{o: o, root: root, found: map[string]string{}, groups: map[uint32]bool{}, dirStats: map[string]*unix.Statx_t{}}
	for _, g := range o.Groups {
		f.groups[g] = true
	}
	if f.o.access == nil {
		f.o.access = func(dirfd int, name string, mode uint32) bool {
			return unix.Faccessat(dirfd, name, mode, unix.AT_EACCESS|unix.AT_SYMLINK_NOFOLLOW) == nil
		}
	}
	var res Result
	key := o.key()
	var c *cacheFile
	if o.CacheDir != "" {
		res.Cache = CachePath(o.CacheDir, o.Root)
		c = readCache(res.Cache, key)
	}
	changed := false
	looked := map[string]bool{} // watched directories looked at in this run
	if c == nil {
		if o.Notify != nil {
			fmt.Fprintf(o.Notify, "caisson: notice: --overlay: looking for the files of %s you cannot read, to show them empty "+
				"(once: the list is kept in %s)\n", o.Root, res.Cache)
		}
		c = &cacheFile{Version: cacheVersion, Key: key, Searched: start.UnixNano()}
		f.walk("", 0)
		c.TookMS = time.Since(start).Milliseconds()
		res.Searched, changed = true, true
	} else {
		maps.Copy(f.found, c.Entries)
		for rel, was := range c.Watch {
			st := new(unix.Statx_t)
			if err := f.statx(rel, st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				delete(c.Watch, rel)
				changed = true
				continue
			}
			f.dirStats[rel] = st
			if nsec(st.Mtime) != was.Mtime || st.Ino != was.Ino {
				f.walk(rel, was.Looked-clockSlack)
				looked[rel] = true
				changed = true
			}
		}
	}
	ins, dropped := f.check()
	res.StandIns = ins
	if changed || dropped {
		c.Entries = f.found
		c.Watch = f.watchSet(c.Watch, looked, res.Searched, start.UnixNano())
		if res.Cache != "" {
			res.CacheErr = writeCache(res.Cache, c)
		}
	}
	res.Took = time.Since(start)
	return res, nil
}

// key identifies what a cache was made for: the root and the ids and groups it was searched with.
func (o Options) key() string {
	g := slices.Clone(o.Groups)
	slices.Sort(g)
	g = slices.Compact(g)
	return fmt.Sprintf("root=%s uid=%d groups=%v owned=%v", o.Root, o.UID, g, o.Owned)
}

func nsec(t unix.StatxTimestamp) int64 { return t.Sec*1e9 + int64(t.Nsec) }

// statx stats rel below the root without following a symlink at its end.
func (f *finder) statx(rel string, st *unix.Statx_t) error {
	name := rel
	if name == "" {
		name = "."
	}
	return unix.Statx(f.root, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT,
		unix.STATX_TYPE|unix.STATX_MODE|unix.STATX_UID|unix.STATX_GID|unix.STATX_ATIME|unix.STATX_MTIME|
			unix.STATX_CTIME|unix.STATX_INO|unix.STATX_BTIME, st)
}

// Owns reports whether uid is the caller's or one of its subordinate ids: entries owned so are the caller's.
func (o Options) Owns(uid uint32) bool {
	if uid == o.UID {
		return true
	}
	for _, r := range o.Owned {
		if uid >= r.Start && uint64(uid) < r.End() {
			return true
		}
	}
	return false
}

// can reports whether the caller has access (R_OK or X_OK) to the entry: its permission bits for the caller's
// class (owner, group, other) decide, and access(2) confirms the answer that may be wrong (an ACL may grant what
// the bits deny, or deny what they grant). A search asks access(2) when the bits deny; the check of a listed
// entry, which the bits deny almost always, asks it only when they grant.
func (f *finder) can(dirfd int, name string, st *unix.Statx_t, access uint32) bool {
	bits := uint32(st.Mode)
	switch {
	case st.Uid == f.o.UID:
		bits >>= 6
	case f.groups[st.Gid]:
		bits >>= 3
	}
	granted := bits&access == access
	if granted != f.checking {
		return granted
	}
	return f.o.access(dirfd, name, access)
}

// classify says what the sandbox sees of the entry name in dirfd: its stand-in kind ("" for none), and whether
// the search goes on below it (a directory the caller can list and enter and does not own).
func (f *finder) classify(dirfd int, name string, st *unix.Statx_t) (kind string, descend bool) {
	if f.o.Owns(st.Uid) {
		return "", false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if !f.can(dirfd, name, st, unix.R_OK) {
			return rootfs.StandInFile, false
		}
	case unix.S_IFDIR:
		if !f.can(dirfd, name, st, unix.X_OK) || !f.can(dirfd, name, st, unix.R_OK) {
			return rootfs.StandInDir, false
		}
		return "", true
	}
	return "", false
}

// skipped reports whether rel is never searched: a directory the sandbox covers, or a mount point of a file
// system that is not overlaid (pseudo, FUSE) or is a network one.
func (f *finder) skipped(rel string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.skip == nil {
		f.skip = map[string]bool{}
		for _, d := range rootfs.CoveredDirs() {
			f.skip[strings.TrimPrefix(d, "/")] = true
		}
		prefix := strings.TrimSuffix(f.o.Root, "/")
		if mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(f.o.Root)); err == nil {
			for _, m := range mounts {
				mp := strings.TrimPrefix(m.Mountpoint, prefix)
				if mp == "" {
					continue
				}
				if !rootfs.Overlayable(mp, m.FSType) || networkFS[m.FSType] {
					f.skip[strings.TrimPrefix(mp, "/")] = true
				}
			}
		}
	}
	return f.skip[rel]
}

// networkFS are file systems a search does not enter: reading them is slow, and they may hang.
var networkFS = map[string]bool{
	"nfs": true, "nfs4": true, "cifs": true, "smb3": true, "smbfs": true, "9p": true, "afs": true, "ceph": true,
	"lustre": true, "gpfs": true, "ncpfs": true, "coda": true,
}

// scan reads the directory rel: it records the stand-ins among its entries and returns the directories to search
// below it (only those born after since, when since is not 0).
func (f *finder) scan(rel string, since int64) []string {
	name := rel
	if name == "" {
		name = "."
	}
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(f.root, name, &how)
	if err != nil {
		return nil
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	ents, _ := d.ReadDir(-1)
	var dirs []string
	found := map[string]string{}
	for _, e := range ents {
		t := e.Type()
		if t&(os.ModeSymlink|os.ModeDevice|os.ModeNamedPipe|os.ModeSocket|os.ModeCharDevice|os.ModeIrregular) != 0 {
			continue
		}
		child := path.Join(rel, e.Name())
		if f.skipped(child) {
			continue
		}
		var st unix.Statx_t
		if unix.Statx(fd, e.Name(), unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT,
			unix.STATX_TYPE|unix.STATX_MODE|unix.STATX_UID|unix.STATX_GID|unix.STATX_BTIME|unix.STATX_CTIME, &st) != nil {
			continue
		}
		kind, descend := f.classify(fd, e.Name(), &st)
		if kind != "" {
			found[child] = kind
		}
		if descend && (since == 0 || born(&st) > since) {
			dirs = append(dirs, child)
		}
	}
	if len(found) > 0 {
		f.mu.Lock()
		for k, v := range found {
			f.found[k] = v
		}
		f.mu.Unlock()
	}
	return dirs
}

// born is when the entry was created: its birth time, or its change time where the file system has none.
func born(st *unix.Statx_t) int64 {
	if st.Mask&unix.STATX_BTIME != 0 && st.Btime.Sec != 0 {
		return nsec(st.Btime)
	}
	return nsec(st.Ctime)
}

// walk searches the directory rel and everything below it, several directories at once; with since, only the
// directories born in rel after since are searched below it (a watched directory that changed).
func (f *finder) walk(rel string, since int64) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	var visit func(rel string, since int64)
	visit = func(rel string, since int64) {
		defer wg.Done()
		sem <- struct{}{}
		dirs := f.scan(rel, since)
		<-sem
		for _, d := range dirs {
			wg.Add(1)
			go visit(d, 0)
		}
	}
	wg.Add(1)
	visit(rel, since)
	wg.Wait()
}

// check looks at every entry found again, with the directories leading to it, and returns the stand-ins with
// their current attributes. Entries that are gone, readable now, or reached through a symlink are dropped
// (dropped is then true); a directory that became readable is searched.
func (f *finder) check() (ins []rootfs.StandIn, dropped bool) {
	f.checking = true
	defer func() { f.checking = false }()
	rels := make([]string, 0, len(f.found))
	for rel := range f.found {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	dirs := map[string]*unix.Statx_t{} // ancestors: nil when not a plain directory
	for rel, st := range f.dirStats {
		dirs[rel] = st
	}
	var dirOK func(rel string) (*unix.Statx_t, bool)
	dirOK = func(rel string) (*unix.Statx_t, bool) {
		if rel == "." || rel == "" {
			return nil, true
		}
		if st, ok := dirs[rel]; ok {
			return st, st != nil
		}
		if _, ok := dirOK(path.Dir(rel)); !ok {
			dirs[rel] = nil
			return nil, false
		}
		st := new(unix.Statx_t)
		if f.statx(rel, st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			st = nil
		}
		dirs[rel] = st
		return st, st != nil
	}
	var readable []string
	for _, rel := range rels {
		var st unix.Statx_t
		if _, ok := dirOK(path.Dir(rel)); !ok || f.statx(rel, &st) != nil {
			delete(f.found, rel)
			dropped = true
			continue
		}
		kind, descend := f.classify(f.root, rel, &st)
		if kind == "" {
			delete(f.found, rel)
			dropped = true
			if descend {
				readable = append(readable, rel)
			}
			continue
		}
		if kind != f.found[rel] {
			f.found[rel] = kind
			dropped = true
		}
		ins = append(ins, standIn(rel, kind, &st))
	}
	if len(readable) > 0 {
		f.checking = false // what is below them is searched, not checked (see can)
		for _, rel := range readable {
			f.walk(rel, 0)
		}
		more, _ := f.check()
		return more, true
	}
	parents := map[string]bool{}
	for _, s := range ins {
		for p := path.Dir(strings.TrimPrefix(s.Path, "/")); p != "." && !parents[p]; p = path.Dir(p) {
			parents[p] = true
		}
	}
	for p := range parents {
		st, _ := dirOK(p)
		ins = append(ins, standIn(p, rootfs.StandInParent, st))
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].Path < ins[j].Path })
	return ins, dropped
}

func standIn(rel, kind string, st *unix.Statx_t) rootfs.StandIn {
	return rootfs.StandIn{Path: "/" + rel, Kind: kind, Mode: uint32(st.Mode) & 0o7777, UID: st.Uid, GID: st.Gid,
		Atime: nsec(st.Atime), Mtime: nsec(st.Mtime)}
}

// watchSet returns the directories to watch: the root, its directories that are searched, and every directory
// leading to an entry. One looked at in this run (all of them after a search of everything) is stamped with the
// run's start, the others keep their stamp; one that changed too close to that time gets mtime 0, so that the
// next run looks at it again.
func (f *finder) watchSet(prev map[string]stamp, looked map[string]bool, all bool, start int64) map[string]stamp {
	w := map[string]stamp{}
	add := func(rel string) {
		if _, ok := w[rel]; ok {
			return
		}
		var st unix.Statx_t
		if f.statx(rel, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return
		}
		s := stamp{Mtime: nsec(st.Mtime), Ino: st.Ino, Looked: start}
		if p, ok := prev[rel]; ok && !all && !looked[rel] && p.Mtime == s.Mtime && p.Ino == s.Ino {
			s.Looked = p.Looked
		}
		if s.Mtime >= s.Looked-clockSlack {
			s.Mtime = 0
		}
		w[rel] = s
	}
	add("")
	if d, err := os.ReadDir(f.o.Root); err == nil {
		for _, e := range d {
			if e.IsDir() && !f.skipped(e.Name()) {
				add(e.Name())
			}
		}
	}
	for rel := range f.found {
		for p := path.Dir(rel); p != "."; p = path.Dir(p) {
			add(p)
		}
	}
	return w
}

// readCache returns the cache at p when it is there, readable and made for key; otherwise nil.
func readCache(p, key string) *cacheFile {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var c cacheFile
	if json.Unmarshal(b, &c) != nil || c.Version != cacheVersion || c.Key != key || c.Entries == nil {
		return nil
	}
	for rel, kind := range c.Entries {
		if rootfs.CheckStandIn(rootfs.StandIn{Path: "/" + rel, Kind: kind}) != nil || kind == rootfs.StandInParent {
			return nil
		}
	}
	for rel := range c.Watch {
		if rel != "" && path.Clean(rel) != rel || strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, "..") {
			return nil
		}
	}
	return &c
}

// writeCache replaces the cache at p (a new file renamed over it: concurrent runs never read half a file).
func writeCache(p string, c *cacheFile) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".standins-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("stand-ins cache %s: %w", p, errors.Unwrap(err))
	}
	return nil
}
