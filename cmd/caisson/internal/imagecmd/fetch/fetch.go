// Package fetch downloads an image from a registry (the OCI distribution API, through go-containerregistry) into
// an OCI image layout directory, for `caisson rootfs pull`: one image, chosen for a platform from a multi-platform
// index, every blob checked against its digest as it arrives. It is linked only into caisson-image, which caisson
// runs on the host as the caller (its network, proxy environment and registry credentials); the layout is then
// unpacked as `caisson rootfs unpack` unpacks any layout.
package fetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options say what to fetch and how.
type Options struct {
	// Image is the reference as the user wrote it: [REGISTRY/]REPOSITORY[:TAG|@DIGEST]. Docker Hub is the
	// default registry, library/ its default namespace, latest the default tag.
	Image string
	// Platform is OS/ARCH[/VARIANT], or "" for this machine's (linux/GOARCH): then an image made for another one
	// is refused.
	Platform string
	// Insecure allows plain HTTP and TLS certificates that do not verify (a registry on 127.0.0.1 uses plain HTTP
	// without it, as every client does).
	Insecure bool
	// Dir is the OCI layout directory to write; it must not exist.
	Dir string
	// Progress, when set, gets a progress bar (a terminal).
	Progress io.Writer
	// Keychain finds the credentials; nil is AuthFiles.
	Keychain Keychain
}

// Error is a fetch failure, said in one line.
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

func errorf(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	msg = strings.Join(strings.Fields(msg), " ") // one line, whatever the registry answered
	if len(msg) > 400 {
		msg = msg[:400] + "..."
	}
	return &Error{msg}
}

// ParseReference parses an image reference as Docker and Podman do: Docker Hub for a name without a registry,
// library/ for a one-part name there, the tag latest when neither a tag nor a digest is given.
func ParseReference(s string, insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	if s == "" || strings.ContainsAny(s, " \t\n") {
		return nil, errorf("%q is not an image reference (want [REGISTRY/]NAME[:TAG|@DIGEST])", s)
	}
	ref, err := name.ParseReference(s, opts...)
	if err != nil {
		return nil, errorf("%q is not an image reference (want [REGISTRY/]NAME[:TAG|@DIGEST]): %v", s, err)
	}
	return ref, nil
}

// ParsePlatform parses OS/ARCH[/VARIANT]; "" is this machine's platform.
func ParsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" || (len(parts) == 3 && parts[2] == "") {
		return v1.Platform{}, errorf("--platform %q: want OS/ARCH or OS/ARCH/VARIANT (such as linux/arm64)", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// layerTypes are the layer media types caisson unpacks (tar, gzip or zstd compressed).
var layerTypes = map[types.MediaType]bool{
	types.OCILayer: true, types.OCIUncompressedLayer: true, types.OCILayerZStd: true,
	types.DockerLayer: true, types.DockerUncompressedLayer: true,
}

// Fetch downloads the image into a new OCI layout at o.Dir and returns its reference with the digest of the
// manifest fetched. On failure the caller removes o.Dir.
func Fetch(ctx context.Context, o Options) (string, error) {
	ref, err := ParseReference(o.Image, o.Insecure)
	if err != nil {
		return "", err
	}
	want, err := ParsePlatform(o.Platform)
	if err != nil {
		return "", err
	}
	kc := o.Keychain
	if kc == nil {
		kc = AuthFiles()
	}
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	if o.Insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --insecure asks for it
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuthFromKeychain(kc),
		remote.WithUserAgent("caisson"),
		remote.WithRetryBackoff(remote.Backoff{Duration: 300 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3})}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return "", describe(ref, err, o.Insecure)
	}
	var img v1.Image
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return "", describe(ref, err, o.Insecure)
		}
		if img, err = pick(ref, idx, want, 0); err != nil {
			return "", err
		}
	case desc.MediaType.IsImage():
		if img, err = desc.Image(); err != nil {
			return "", describe(ref, err, o.Insecure)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return "", describe(ref, err, o.Insecure)
		}
		got := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
		if !matches(got, want) {
			hint := fmt.Sprintf(" (to unpack it anyway: --platform %s)", platformString(got))
			if o.Platform != "" {
				hint = ""
			}
			return "", errorf("%s is an image for %s, not %s%s", ref, platformString(got), platformString(want), hint)
		}
	case desc.MediaType == types.DockerManifestSchema1 || desc.MediaType == types.DockerManifestSchema1Signed:
		return "", errorf("%s is a Docker schema 1 image, which caisson does not read (push it again with a current client)", ref)
	case strings.HasPrefix(string(desc.MediaType), "text/html"):
		return "", errorf("%s: %s answered with an HTML page, not the registry API (is it a registry?)", ref, ref.Context().RegistryStr())
	default:
		return "", errorf("%s: %s answered with %q, not an image manifest or index (is it a registry?)",
			ref, ref.Context().RegistryStr(), desc.MediaType)
	}
	return writeLayout(ref, img, o)
}

// pick chooses want's image in a multi-platform index, or says which platforms it has.
func pick(ref name.Reference, idx v1.ImageIndex, want v1.Platform, depth int) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, describe(ref, err, false)
	}
	var have []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			continue
		}
		if d.MediaType.IsIndex() && depth < 2 {
			sub, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, describe(ref, err, false)
			}
			if img, err := pick(ref, sub, want, depth+1); err == nil {
				return img, nil
			}
			continue
		}
		if !d.MediaType.IsImage() {
			continue
		}
		if matches(*d.Platform, want) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, describe(ref, err, false)
			}
			return img, nil
		}
		if d.Platform.OS != "unknown" { // attestation manifests
			have = append(have, platformString(*d.Platform))
		}
	}
	sort.Strings(have)
	return nil, errorf("%s has no image for %s (it has %s; choose one with --platform)", ref, platformString(want),
		strings.Join(have, ", "))
}

// matches reports whether an image for got runs on want: same OS and architecture, and the variant asked for.
func matches(got, want v1.Platform) bool {
	return got.OS == want.OS && got.Architecture == want.Architecture && (want.Variant == "" || got.Variant == want.Variant)
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// writeLayout writes the image's blobs (each checked against its digest while it is read), then its manifest, into
// a new OCI layout at o.Dir, with a progress bar on o.Progress.
func writeLayout(ref name.Reference, img v1.Image, o Options) (string, error) {
	mf, err := img.Manifest()
	if err != nil {
		return "", describe(ref, err, o.Insecure)
	}
	for i, l := range mf.Layers {
		if !layerTypes[l.MediaType] {
			return "", errorf("%s: layer %d of %d has the media type %q, which caisson cannot unpack", ref, i+1, len(mf.Layers), l.MediaType)
		}
	}
	p, err := layout.Write(o.Dir, empty.Index)
	if err != nil {
		return "", errorf("write %s: %v", o.Dir, err)
	}
	bar := newProgress(o.Progress, ref.String(), mf.Layers)
	defer bar.done()
	layers, err := img.Layers()
	if err != nil {
		return "", describe(ref, err, o.Insecure)
	}
	for i, l := range layers {
		digest, err := l.Digest()
		if err != nil {
			return "", describe(ref, err, o.Insecure)
		}
		rc, err := l.Compressed()
		if err != nil {
			return "", describe(ref, err, o.Insecure)
		}
		err = p.WriteBlob(digest, bar.reader(i, rc))
		rc.Close()
		if err != nil {
			return "", describe(ref, fmt.Errorf("layer %d of %d (%s): %w", i+1, len(layers), digest, err), o.Insecure)
		}
	}
	// Not p.AppendImage(img): it opens every layer's download again before it sees the blob is there.
	cfgName, err := img.ConfigName()
	if err != nil {
		return "", describe(ref, err, o.Insecure)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return "", describe(ref, err, o.Insecure)
	}
	if err := p.WriteBlob(cfgName, io.NopCloser(bytes.NewReader(cfg))); err != nil {
		return "", errorf("write %s: %v", o.Dir, err)
	}
	desc, err := partial.Descriptor(img)
	if err != nil {
		return "", describe(ref, err, o.Insecure)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return "", describe(ref, err, o.Insecure)
	}
	if err := p.WriteBlob(desc.Digest, io.NopCloser(bytes.NewReader(raw))); err != nil {
		return "", errorf("write %s: %v", o.Dir, err)
	}
	if err := p.AppendDescriptor(v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}); err != nil {
		return "", errorf("write %s: %v", o.Dir, err)
	}
	return ref.Context().String() + "@" + desc.Digest.String(), nil
}

// describe turns a registry or transfer error into one line that says what happened to ref, with a hint where a
// fix is known.
func describe(ref name.Reference, err error, insecure bool) error {
	var fe *Error
	if errors.As(err, &fe) {
		return err
	}
	reg := ref.Context().RegistryStr()
	if m := err.Error(); !insecure && (strings.Contains(m, "HTTP request to an HTTPS server") || strings.Contains(m, "sent to HTTPS port")) {
		// A registry on this machine or a private network is tried with HTTPS, then HTTP: what failed is HTTPS.
		return errorf("%s: %s speaks HTTPS with a certificate this machine does not trust (for a registry you trust: --insecure)", ref, reg)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode:
				return errorf("%s: no such tag or digest in %s (the registry answered MANIFEST_UNKNOWN)", ref, ref.Context())
			case transport.NameUnknownErrorCode:
				return errorf("%s: no repository %s in %s (NAME_UNKNOWN)", ref, ref.Context().RepositoryStr(), reg)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return errorf("%s: %s refused access (%s): add credentials for %s to $REGISTRY_AUTH_FILE, "+
					"~/.config/containers/auth.json or ~/.docker/config.json (podman login or docker login write them)", ref, reg, d.Code, reg)
			}
		}
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return errorf("%s: %s refused access (HTTP %d): add credentials for %s to $REGISTRY_AUTH_FILE, "+
				"~/.config/containers/auth.json or ~/.docker/config.json (podman login or docker login write them)", ref, reg, te.StatusCode, reg)
		case http.StatusNotFound:
			return errorf("%s: not found in %s (HTTP 404)", ref, reg)
		}
		return errorf("%s: the registry %s answered HTTP %d %s", ref, reg, te.StatusCode, http.StatusText(te.StatusCode))
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "certificate") && !insecure:
		return errorf("%s: TLS with %s: %v (for a registry you trust without a valid certificate: --insecure)", ref, reg, err)
	case strings.Contains(msg, "http: server gave HTTP response to HTTPS client") && !insecure:
		return errorf("%s: %s speaks plain HTTP (to use it anyway: --insecure)", ref, reg)
	case strings.Contains(msg, "invalid character '<'"), strings.Contains(msg, "text/html"):
		return errorf("%s: %s answered with an HTML page, not the registry API (is it a registry?)", ref, reg)
	case errors.Is(err, context.Canceled):
		return errorf("%s: interrupted", ref)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return errorf("%s: no registry answers at %s (connection refused)", ref, reg)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return errorf("%s: cannot resolve %s: %v", ref, reg, dns)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrDeadlineExceeded) {
		return errorf("%s: transfer from %s failed: %v", ref, reg, err)
	}
	return errorf("%s: %v", ref, err)
}
