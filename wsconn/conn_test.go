package wsconn

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// TestConnSize guards the memory of an idle connection, the figure the
// product is measured by: a Conn must stay within the 160-byte size class
// of the allocator. A field that pushes it over costs 16 bytes more per
// connection; find the bytes elsewhere.
func TestConnSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the budget is for 64-bit platforms")
	}
	var c Conn
	assert.LessOrEqual(t, unsafe.Sizeof(c), uintptr(160), "size of Conn")
}
