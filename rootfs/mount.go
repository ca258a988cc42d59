package rootfs

import (
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one mount of a container's root in the OCI runtime's terms (config.json's mounts), after ParseMount:
// a bind of a host path or a new file system instance, with its per-mount attributes, its propagation and the
// options passed to the file system.
type Mount struct {
	// Type is "bind" for a bind mount, else the file system type (tmpfs, proc, sysfs, cgroup, ...).
	Type string
	// Source is the host path of a bind mount (absolute), or the source string of a file system ("tmpfs").
	Source string
	// Destination is the absolute path inside the container.
	Destination string
	// Recursive is set for rbind: the source's sub-mounts come along.
	Recursive bool
	// AttrSet and AttrClr are MOUNT_ATTR_* bits set and cleared on the mount itself (ro, nosuid, nodev, noexec,
	// the atime mode, nosymfollow). For a bind mount, bits in neither keep the source's value.
	AttrSet, AttrClr uint64
	// RecAttrSet and RecAttrClr are MOUNT_ATTR_* bits applied to the mount and every mount below it (rro, rnosuid,
	// ...).
	RecAttrSet, RecAttrClr uint64
	// Propagation is one of MS_SHARED, MS_SLAVE, MS_PRIVATE, MS_UNBINDABLE (0: unchanged); RecPropagation says
	// whether it applies to the sub-mounts too (rshared, ...).
	Propagation    uint64
	RecPropagation bool
	// SBFlags are superblock options set or cleared through fsconfig flags ("sync", "dirsync", "lazytime",
	// "mand"; and the negations "async", "nolazytime", "nomand"), for new file systems.
	SBFlags []string
	// Data are the file system's own options in order: "key=value" or "flag".
	Data []string
	// CopyUp fills a new tmpfs with the content of the directory it covers (the tmpcopyup extension).
	CopyUp bool
}

// optionAttr maps the per-mount options to MOUNT_ATTR_* bits: set when true, cleared when false.
var optionAttr = map[string]struct {
	attr uint64
	set  bool
}{
	"ro": {unix.MOUNT_ATTR_RDONLY, true}, "rw": {unix.MOUNT_ATTR_RDONLY, false},
	"nosuid": {unix.MOUNT_ATTR_NOSUID, true}, "suid": {unix.MOUNT_ATTR_NOSUID, false},
	"nodev": {unix.MOUNT_ATTR_NODEV, true}, "dev": {unix.MOUNT_ATTR_NODEV, false},
	"noexec": {unix.MOUNT_ATTR_NOEXEC, true}, "exec": {unix.MOUNT_ATTR_NOEXEC, false},
	"nodiratime": {unix.MOUNT_ATTR_NODIRATIME, true}, "diratime": {unix.MOUNT_ATTR_NODIRATIME, false},
	"nosymfollow": {unix.MOUNT_ATTR_NOSYMFOLLOW, true}, "symfollow": {unix.MOUNT_ATTR_NOSYMFOLLOW, false},
}

// atimeOptions are the options of the three-state atime field (MOUNT_ATTR__ATIME).
var atimeOptions = map[string]uint64{
	"relatime": unix.MOUNT_ATTR_RELATIME, "noatime": unix.MOUNT_ATTR_NOATIME, "strictatime": unix.MOUNT_ATTR_STRICTATIME,
	// The negations go back to the kernel's default, relatime.
	"norelatime": unix.MOUNT_ATTR_RELATIME, "atime": unix.MOUNT_ATTR_RELATIME, "nostrictatime": unix.MOUNT_ATTR_RELATIME,
}

// propagationOptions maps the propagation options to MS_* and whether they are recursive.
var propagationOptions = map[string]struct {
	flag uint64
	rec  bool
}{
	"shared": {unix.MS_SHARED, false}, "rshared": {unix.MS_SHARED, true},
	"slave": {unix.MS_SLAVE, false}, "rslave": {unix.MS_SLAVE, true},
	"private": {unix.MS_PRIVATE, false}, "rprivate": {unix.MS_PRIVATE, true},
	"unbindable": {unix.MS_UNBINDABLE, false}, "runbindable": {unix.MS_UNBINDABLE, true},
}

// sbOptions are the superblock options passed to fsconfig as flags.
var sbOptions = map[string]bool{
	"sync": true, "async": true, "dirsync": true, "lazytime": true, "nolazytime": true, "mand": true, "nomand": true,
}

// ignoredOptions are accepted and have no effect: "defaults", logging and i_version switches the new mount API
// does not carry, and "remount" (every mount of a new container is new).
var ignoredOptions = map[string]bool{
	"defaults": true, "silent": true, "loud": true, "iversion": true, "noiversion": true, "remount": true,
}

// ParseMount checks one config.json mount and turns its options into a Mount. relTo is the directory a relative
// bind source is resolved against (the bundle). An unsupported option or a bad destination is an error naming it.
func ParseMount(typ, source, dest string, options []string, relTo string) (Mount, error) {
	m := Mount{Type: typ, Source: source, Destination: dest}
	if dest == "" || !path.IsAbs(dest) {
		return m, fmt.Errorf("destination %q must be an absolute path", dest)
	}
	m.Destination = path.Clean(dest)
	bind := typ == "bind"
	for _, o := range options {
		switch o {
		case "bind":
			bind = true
			continue
		case "rbind":
			bind, m.Recursive = true, true
			continue
		case "tmpcopyup":
			m.CopyUp = true
			continue
		case "idmap", "ridmap":
			return m, fmt.Errorf("option %q: idmapped mounts are not supported", o)
		}
		if a, ok := optionAttr[o]; ok {
			m.AttrSet, m.AttrClr = setAttr(m.AttrSet, m.AttrClr, a.attr, a.set)
			continue
		}
		if at, ok := atimeOptions[o]; ok {
			m.AttrSet = m.AttrSet&^unix.MOUNT_ATTR__ATIME | at
			m.AttrClr |= unix.MOUNT_ATTR__ATIME
			continue
		}
		if p, ok := propagationOptions[o]; ok {
			m.Propagation, m.RecPropagation = p.flag, p.rec
			continue
		}
		if len(o) > 1 && o[0] == 'r' {
			if a, ok := optionAttr[o[1:]]; ok {
				m.RecAttrSet, m.RecAttrClr = setAttr(m.RecAttrSet, m.RecAttrClr, a.attr, a.set)
				continue
			}
			if at, ok := atimeOptions[o[1:]]; ok {
				m.RecAttrSet = m.RecAttrSet&^unix.MOUNT_ATTR__ATIME | at
				m.RecAttrClr |= unix.MOUNT_ATTR__ATIME
				continue
			}
		}
		if ignoredOptions[o] {
			continue
		}
		if sbOptions[o] {
			m.SBFlags = append(m.SBFlags, o)
			continue
		}
		if bind {
			return m, fmt.Errorf("option %q is not a bind mount option", o)
		}
		if o == "" {
			return m, fmt.Errorf("empty option")
		}
		m.Data = append(m.Data, o)
	}
	if bind {
		m.Type = "bind"
		if source == "" {
			return m, fmt.Errorf("a bind mount needs a source")
		}
		if !path.IsAbs(source) {
			m.Source = path.Join(relTo, source)
		}
		if m.CopyUp {
			return m, fmt.Errorf("option \"tmpcopyup\" applies to tmpfs only")
		}
		return m, nil
	}
	if typ == "" {
		return m, fmt.Errorf("no type (and no bind option)")
	}
	if strings.ContainsAny(typ, "/ ") {
		return m, fmt.Errorf("invalid type %q", typ)
	}
	if m.CopyUp && typ != "tmpfs" {
		return m, fmt.Errorf("option \"tmpcopyup\" applies to tmpfs only")
	}
	return m, nil
}

// setAttr records attr as set (or cleared) in the pair, undoing an earlier opposite option.
func setAttr(set, clr, attr uint64, on bool) (uint64, uint64) {
	if on {
		return set | attr, clr &^ attr
	}
	return set &^ attr, clr | attr
}
