package extract

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/caisson-sandbox/caisson/rootfs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// openImage opens an image archive: an OCI image layout directory, an OCI layout in a tar file, or a `docker
// save` / `podman save` archive. An OCI tar is first copied out to a directory under tmp (blobs only, names
// checked). The formats are go-containerregistry's.
func openImage(archive, tmp string) (v1.Image, error) {
	st, err := os.Stat(archive)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return imageFromLayout(archive)
	}
	names, err := tarNames(archive)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable tar archive: %w", archive, err)
	}
	switch {
	case names["manifest.json"]:
		img, err := tarball.ImageFromPath(archive, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: docker archive: %w", archive, err)
		}
		return img, nil
	case names["index.json"] && names["oci-layout"]:
		dir := filepath.Join(tmp, "oci")
		if err := extractLayout(archive, dir); err != nil {
			return nil, fmt.Errorf("%s: %w", archive, err)
		}
		return imageFromLayout(dir)
	}
	return nil, fmt.Errorf("%s: neither an OCI image layout nor a docker-save archive (no index.json or manifest.json)", archive)
}

// tarNames lists the cleaned names of a tar file's entries (the whole file is read: a truncated one fails here).
func tarNames(p string) (map[string]bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		if n, err := rootfs.EntryPath(h.Name); err == nil {
			names[n] = true
		}
	}
}

// extractLayout copies the directories and regular files of an OCI layout tar into dir; nothing else is taken.
func extractLayout(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		n, err := rootfs.EntryPath(h.Name)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, n)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o700)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(dst), 0o700); err == nil {
				err = writeFile(dst, tr)
			}
		}
		if err != nil {
			return err
		}
	}
}

func writeFile(dst string, r io.Reader) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// imageFromLayout picks the image of an OCI layout: the only one, or the one for this machine's architecture.
func imageFromLayout(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: OCI layout: %w", dir, err)
	}
	return imageFromIndex(idx, 0)
}

func imageFromIndex(idx v1.ImageIndex, depth int) (v1.Image, error) {
	if depth > 4 {
		return nil, errors.New("OCI layout: indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w", err)
	}
	var pick *v1.Descriptor
	for i := range im.Manifests {
		d := &im.Manifests[i]
		if d.MediaType.IsIndex() {
			sub, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("OCI layout: %w", err)
			}
			return imageFromIndex(sub, depth+1)
		}
		if !d.MediaType.IsImage() {
			continue
		}
		if d.Platform == nil || (d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH) || pick == nil {
			pick = d
		}
	}
	if pick == nil {
		return nil, errors.New("OCI layout: no image manifest in index.json")
	}
	img, err := idx.Image(pick.Digest)
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w", err)
	}
	return img, nil
}

// applyImage applies img's layers in order, checking each layer's uncompressed digest against its diff id.
func applyImage(img v1.Image, u *rootfs.Unpacker) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("image layers: %w", err)
	}
	for i, l := range layers {
		if err := applyLayer(l, u); err != nil {
			return fmt.Errorf("layer %d of %d: %w", i+1, len(layers), err)
		}
	}
	return u.Finish()
}

func applyLayer(l v1.Layer, u *rootfs.Unpacker) error {
	want, err := l.DiffID()
	if err != nil {
		return err
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	r := io.TeeReader(rc, h)
	if err := u.ApplyLayer(r); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); want.Algorithm == "sha256" && got != want.String() {
		return fmt.Errorf("digest %s does not match the image's diff id %s (corrupt archive)", got, want)
	}
	return nil
}
