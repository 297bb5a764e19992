// Command chart draws the chart of a "fanout bench compare" run from its
// compare.json: memory per connection (bars) and the fanout latency CDF of
// each server (lines), as a PNG.
//
// It is a command, and a module, of its own so that the fanout binary does
// not link the plotting library, whose fonts are parsed at start-up and
// would cost every "fanout serve" several MiB, and so that the fanout
// module's go test ./... does not build it. "fanout bench compare" runs it
// with go run.
//
// Usage, in bench/chart:
//
//	go run . -in compare.json -out compare.png
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/fanout/fanout/bench"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// drawChart draws the comparison as a PNG at path: memory per connection
// (server RSS and Go heap, bars) on the left, and the fanout latency CDF of
// each server (one line each) on the right.
func drawChart(path string, c *bench.Comparison) error {
	var names []string
	var rss, heap plotter.Values
	mem := plot.New()
	mem.Title.Text = "Server memory per idle connection"
	mem.Y.Label.Text = "bytes per connection"
	cdf := plot.New()
	cdf.Title.Text = "Fanout latency CDF (send to receipt)"
	cdf.X.Label.Text = "latency (ms, log scale)"
	cdf.Y.Label.Text = "fraction of receipts"
	cdf.X.Scale = plot.LogScale{}
	cdf.X.Tick.Marker = plot.LogTicks{Prec: -1}
	cdf.Y.Min, cdf.Y.Max = 0, 1
	cdf.Legend.Top = false
	cdf.Legend.Left = false
	cdf.Add(plotter.NewGrid())

	for i, s := range c.Servers {
		if s.Report == nil {
			continue
		}
		if x := s.Report.Idle; x != nil {
			names = append(names, s.Name)
			rss = append(rss, max(0, x.PerConn.RSSBytes))
			heap = append(heap, max(0, x.PerConn.HeapBytes))
		}
		if x := s.Report.Fanout; x != nil && len(x.Latency.CDF) > 0 {
			pts := make(plotter.XYs, 0, len(x.Latency.CDF))
			for _, p := range x.Latency.CDF {
				pts = append(pts, plotter.XY{X: max(float64(p.US), 1) / 1000, Y: p.Q})
			}
			line, err := plotter.NewLine(pts)
			if err != nil {
				return fmt.Errorf("chart: %w", err)
			}
			line.Color = plotutil.Color(i)
			line.Dashes = plotutil.Dashes(i)
			line.Width = vg.Points(1.5)
			cdf.Add(line)
			cdf.Legend.Add(s.Name, line)
		}
	}
	if len(names) > 0 {
		w := vg.Points(18)
		br, err := plotter.NewBarChart(rss, w)
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		br.Color = plotutil.Color(0)
		br.Offset = -w / 2
		bh, err := plotter.NewBarChart(heap, w)
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		bh.Color = plotutil.Color(1)
		bh.Offset = w / 2
		mem.Add(br, bh)
		mem.Legend.Add("RSS", br)
		mem.Legend.Add("Go heap", bh)
		mem.Legend.Top = true
		mem.NominalX(names...)
	}

	img := vgimg.New(vg.Points(1100), vg.Points(450))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 8, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align([][]*plot.Plot{{mem, cdf}}, tiles, dc)
	mem.Draw(canvases[0][0])
	cdf.Draw(canvases[0][1])

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("chart: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

func main() {
	in := flag.String("in", "compare.json", "the `file` that fanout bench compare wrote")
	out := flag.String("out", "compare.png", "the PNG `file` to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	var c bench.Comparison
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("chart: %s: %w", in, err)
	}
	return drawChart(out, &c)
}
