package units

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBytes(t *testing.T) {
	t.Parallel()
	for b, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 8192: "8.0 KiB", 150 << 20: "150.0 MiB",
		1288490189: "1.2 GiB", 1 << 50: "1.0 PiB", math.MaxInt64: "8.0 EiB",
	} {
		require.Equal(t, want, Bytes(b), b)
	}
}

func TestMillis(t *testing.T) {
	t.Parallel()
	require.Equal(t, "1m01s", Millis(61_000))
	require.Equal(t, "0.42 ms", Millis(0.42))
	require.Equal(t, "7.5 ms", Millis(7.5))
	require.Equal(t, "812 ms", Millis(812))
	require.Equal(t, "1.2 s", Millis(1200))
}
