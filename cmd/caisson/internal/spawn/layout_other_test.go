//go:build !(linux && amd64)

package spawn

import "testing"

func testRequestLayout(t *testing.T) { t.Skip("no assembly on this architecture") }
