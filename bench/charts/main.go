// Command charts draws the PNG charts of a bench/load run (results.json): the latency distribution of each target
// at each concurrency, and the RSS of both processes over the run. It is a module of its own so that the plotting
// library never enters the webhook's dependency graph.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// The subset of bench/load's results.json the charts read.
type results struct {
	Machine struct {
		CPU       string  `json:"cpu"`
		Cores     int     `json:"cores"`
		LoadStart float64 `json:"loadAverageAtStart"`
	} `json:"machine"`
	Started string `json:"started"`
	Config  struct {
		PhaseSeconds float64  `json:"phaseSeconds"`
		WebhookArgs  []string `json:"webhookArgs"`
	} `json:"config"`
	Phases []struct {
		Target      string `json:"target"`
		Concurrency int    `json:"concurrency"`
		Soak        bool   `json:"soak"`
		Latency     []struct {
			UpperMicros float64 `json:"upperMicros"`
			Count       float64 `json:"count"`
		} `json:"latency"`
	} `json:"phases"`
	RSS []struct {
		Target  string  `json:"target"`
		Seconds float64 `json:"seconds"`
		MiB     float64 `json:"mib"`
	} `json:"rss"`
}

var colors = map[string]color.Color{
	"apeiro-cmk": color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"bare":       color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
}

func main() {
	in := flag.String("in", ".dev/bench/results.json", "results.json of a bench/load run")
	out := flag.String("out", "docs/img", "directory for the PNG files")
	prefix := flag.String("prefix", "bench-load", "file name prefix")
	flag.Parse()
	if err := run(*in, *out, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "charts:", err)
		os.Exit(1)
	}
}

func run(in, out, prefix string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	where := fmt.Sprintf("%s, %d cores, load %.1f at start; %s", r.Machine.CPU, r.Machine.Cores, r.Machine.LoadStart, r.Started)
	written, err := latencyCharts(r, out, prefix, where)
	if err != nil {
		return err
	}
	if len(r.RSS) > 0 {
		p := filepath.Join(out, prefix+"-rss.png")
		if err := rssChart(r, p, where); err != nil {
			return err
		}
		written = append(written, p)
	}
	for _, p := range written {
		fmt.Println(p)
	}
	return nil
}

// latencyCharts draws, per concurrency, the cumulative latency distribution of both targets (all rounds merged),
// on a logarithmic latency axis so that the tail is visible.
func latencyCharts(r results, out, prefix, where string) ([]string, error) {
	type key struct {
		c      int
		target string
	}
	merged := map[key]map[float64]float64{}
	var levels []int
	for _, ph := range r.Phases {
		if ph.Soak {
			continue
		}
		k := key{ph.Concurrency, ph.Target}
		if merged[k] == nil {
			merged[k] = map[float64]float64{}
			if !contains(levels, ph.Concurrency) {
				levels = append(levels, ph.Concurrency)
			}
		}
		for _, pt := range ph.Latency {
			merged[k][pt.UpperMicros] += pt.Count
		}
	}
	sort.Ints(levels)
	var written []string
	for _, c := range levels {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Admission latency, %d concurrent requests (client side, TLS keep-alive)", c)
		p.X.Label.Text = "latency (ms, log scale)"
		p.Y.Label.Text = "share of requests answered"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = 0, 1
		p.Add(plotter.NewGrid())
		for _, target := range []string{"apeiro-cmk", "bare"} {
			h := merged[key{c, target}]
			if len(h) == 0 {
				continue
			}
			line, err := plotter.NewLine(cdf(h))
			if err != nil {
				return nil, err
			}
			line.Color = colors[target]
			line.Width = vg.Points(1.5)
			p.Add(line)
			p.Legend.Add(target, line)
		}
		p.Legend.Top = true // the upper left of a distribution is empty
		p.Legend.Left = true
		addCaption(p, where, r.Config.WebhookArgs)
		path := filepath.Join(out, fmt.Sprintf("%s-latency-c%d.png", prefix, c))
		if err := p.Save(8*vg.Inch, 4.5*vg.Inch, path); err != nil {
			return nil, err
		}
		written = append(written, path)
	}
	return written, nil
}

func cdf(h map[float64]float64) plotter.XYs {
	uppers := make([]float64, 0, len(h))
	total := 0.0
	for u, n := range h {
		uppers = append(uppers, u)
		total += n
	}
	sort.Float64s(uppers)
	pts := make(plotter.XYs, 0, len(uppers))
	seen := 0.0
	for _, u := range uppers {
		seen += h[u]
		pts = append(pts, plotter.XY{X: math.Max(u/1000, 0.001), Y: seen / total})
	}
	return pts
}

// rssChart draws the resident set size of both processes over the whole run (side-by-side phases, then the soak).
func rssChart(r results, path, where string) error {
	p := plot.New()
	p.Title.Text = "Resident memory over the run"
	p.X.Label.Text = "time since the first phase (s)"
	p.Y.Label.Text = "RSS (MiB)"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	series := map[string]plotter.XYs{}
	top := 0.0
	for _, s := range r.RSS {
		series[s.Target] = append(series[s.Target], plotter.XY{X: s.Seconds, Y: s.MiB})
		top = math.Max(top, s.MiB)
	}
	p.Y.Max = top * 1.3 // room for the legend above the lines
	for _, target := range []string{"apeiro-cmk", "bare"} {
		if len(series[target]) == 0 {
			continue
		}
		line, err := plotter.NewLine(series[target])
		if err != nil {
			return err
		}
		line.Color = colors[target]
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(target, line)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	addCaption(p, where, r.Config.WebhookArgs)
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}

// addCaption names the machine and the run under the chart, so no figure travels without them.
func addCaption(p *plot.Plot, where string, args []string) {
	p.X.Label.Text += "\n" + where
	if len(args) > 0 {
		p.X.Label.Text += fmt.Sprintf("; webhook flags %v", args)
	}
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
