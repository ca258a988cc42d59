// Command registry is the image registry of caisson's `rootfs pull` tests and benchmark: go-containerregistry's
// in-memory registry (pkg/registry) on 127.0.0.1, with repositories that misbehave on purpose, chosen by the
// first part of the repository's name:
//
//	private/...  needs HTTP basic authentication with -auth USER:PASSWORD (every other repository is open too
//	             to a client that authenticates; /v2/ always asks for credentials, as registries that have
//	             private repositories do)
//	corrupt/...  layers (blobs of 16 KiB or more) are served with one byte changed (a bad digest)
//	cut/...      layers are cut after half their size (the connection closes)
//	stall/...    layers stop after half their size (the connection stays open until the client leaves)
//	html/...     manifests are an HTML page (a web server, not a registry)
//	broken/...   manifests fail with HTTP 500
//
// Writes work in every repository. It prints its base URL (http:// or, with -tls, https:// with a self-signed
// certificate) on the first line of stdout, then serves until its stdin closes or it is killed. -push
// NAME=ARCHIVE pushes a docker-save archive as NAME before it prints the URL (the benchmark's image).
package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type pushes []string

func (p *pushes) String() string     { return strings.Join(*p, ",") }
func (p *pushes) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	auth := flag.String("auth", "caisson:secret", "USER:PASSWORD of the private/ repositories")
	useTLS := flag.Bool("tls", false, "serve HTTPS with a self-signed certificate")
	var push pushes
	flag.Var(&push, "push", "NAME=ARCHIVE: push a docker-save archive before serving (repeatable)")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	h := &misbehave{next: registry.New(registry.Logger(log.New(io.Discard, "", 0))), auth: *auth}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	scheme := "http"
	if *useTLS {
		scheme = "https"
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned()}}
		go srv.ServeTLS(ln, "", "")
	} else {
		go srv.Serve(ln)
	}
	addr := ln.Addr().String()
	for _, p := range push {
		repo, archive, ok := strings.Cut(p, "=")
		if !ok {
			log.Fatalf("-push %q: want NAME=ARCHIVE", p)
		}
		img, err := tarball.ImageFromPath(archive, nil)
		if err != nil {
			log.Fatalf("-push %s: %v", archive, err)
		}
		ref, err := name.ParseReference(addr+"/"+repo, name.Insecure)
		if err != nil {
			log.Fatal(err)
		}
		user, pass, _ := strings.Cut(*auth, ":")
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // our own certificate
		if err := remote.Write(ref, img, remote.WithTransport(tr), remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}))); err != nil {
			log.Fatalf("-push %s: %v", repo, err)
		}
	}
	fmt.Printf("%s://%s\n", scheme, addr)
	// Serve until stdin closes (the test or benchmark that started it is gone).
	io.Copy(io.Discard, bufio.NewReader(os.Stdin))
}

// misbehave wraps the registry with the behaviours of the special repositories.
type misbehave struct {
	next http.Handler
	auth string
}

func (m *misbehave) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	authed := false
	if u, p, ok := r.BasicAuth(); ok && u != "" { // some clients send empty credentials: anonymous
		if u+":"+p != m.auth {
			m.challenge(w)
			return
		}
		authed = true
	}
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	if path == "" || r.URL.Path == "/v2" {
		if !authed {
			m.challenge(w)
			return
		}
		m.next.ServeHTTP(w, r)
		return
	}
	first, _, _ := strings.Cut(path, "/")
	isBlob := strings.Contains(path, "/blobs/sha256:") && r.Method == http.MethodGet
	isManifest := strings.Contains(path, "/manifests/") && r.Method == http.MethodGet
	switch {
	case first == "private" && !authed:
		m.challenge(w)
		return
	case first == "html" && isManifest:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body>It works!</body></html>\n")
		return
	case first == "broken" && isManifest:
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	case (first == "corrupt" || first == "cut" || first == "stall") && isBlob:
		rec := &recorder{header: http.Header{}}
		m.next.ServeHTTP(rec, r)
		body := []byte(rec.body.String())
		if rec.code != 0 && rec.code != http.StatusOK || len(body) < layerMin {
			// A configuration (small) is served as it is: the layers misbehave.
			m.next.ServeHTTP(w, r)
			return
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(http.StatusOK)
		switch first {
		case "corrupt":
			body[len(body)/2] ^= 0xff
			w.Write(body)
		case "cut":
			w.Write(body[:len(body)/2])
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
				}
			}
		case "stall":
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Minute):
			}
		}
		return
	}
	m.next.ServeHTTP(w, r)
}

// layerMin is the size from which a blob is taken for a layer (image configurations are smaller).
const layerMin = 16 << 10

// challenge asks for basic credentials.
func (m *misbehave) challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="caisson-test"`)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
}

// recorder keeps a response to change it.
type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.code = code }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

// selfSigned makes a certificate for 127.0.0.1 that no one trusts.
func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "caisson-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
