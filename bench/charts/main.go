// Command charts draws the PNG charts of a bench/load run (results.json): the latency distribution of each target
// at each concurrency, and the RSS of both processes over the run; and those of the e2e evidence files
// (internal/evidence, written by `make bench-e2e`): latency distributions with and without the webhooks through the
// API server, and a latency-over-time chart per fault run. It is a module of its own so that the plotting
// library never enters the webhook's dependency graph.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"io"
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
	in := flag.String("in", ".dev/bench/results.json", "results.json of a bench/load run, an e2e evidence file, or a directory of them")
	out := flag.String("out", "docs/img", "directory for the PNG files")
	prefix := flag.String("prefix", "bench-load", "file name prefix")
	flag.Parse()
	if err := run(*in, *out, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "charts:", err)
		os.Exit(1)
	}
}

// run renders one input file, or every *.json in a directory. The file's "kind" says what it is: none for
// bench/load's results.json, "e2e-load" or "e2e-fault" for the evidence the e2e tests write (internal/evidence).
func run(in, out, prefix string) error {
	st, err := os.Stat(in)
	if err != nil {
		return err
	}
	files := []string{in}
	if st.IsDir() {
		if files, err = filepath.Glob(filepath.Join(in, "*.json")); err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("%s: no *.json files", in)
		}
		sort.Strings(files)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		written, err := renderFile(f, out, prefix)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, p := range written {
			fmt.Println(p)
		}
	}
	return nil
}

// maxInput bounds what is read from one input file.
const maxInput = 64 << 20

func renderFile(in, out, prefix string) ([]string, error) {
	f, err := os.Open(in)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("larger than %d bytes", maxInput)
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, err
	}
	switch head.Kind {
	case "":
		return benchLoadCharts(b, out, prefix)
	case kindE2ELoad:
		return e2eLoadCharts(b, out, prefix)
	case kindE2EFault:
		return faultCharts(b, out, prefix)
	default:
		return nil, fmt.Errorf("unknown kind %q (want none, %q or %q)", head.Kind, kindE2ELoad, kindE2EFault)
	}
}

func benchLoadCharts(b []byte, out, prefix string) ([]string, error) {
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	where := fmt.Sprintf("%s, %d cores, load %.1f at start; %s", r.Machine.CPU, r.Machine.Cores, r.Machine.LoadStart, r.Started)
	written, err := latencyCharts(r, out, prefix, where)
	if err != nil {
		return nil, err
	}
	if len(r.RSS) > 0 {
		p := filepath.Join(out, prefix+"-rss.png")
		if err := rssChart(r, p, where); err != nil {
			return nil, err
		}
		written = append(written, p)
	}
	return written, nil
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
		var series []cdfSeries
		for _, target := range []string{"apeiro-cmk", "bare"} {
			if h := merged[key{c, target}]; len(h) > 0 {
				series = append(series, cdfSeries{name: target, color: colors[target], hist: h})
			}
		}
		path := filepath.Join(out, fmt.Sprintf("%s-latency-c%d.png", prefix, c))
		title := fmt.Sprintf("Admission latency, %d concurrent requests (client side, TLS keep-alive)", c)
		if err := cdfChart(title, series, where, r.Config.WebhookArgs, false, path); err != nil {
			return nil, err
		}
		written = append(written, path)
	}
	return written, nil
}

// cdfSeries is one line of a latency distribution chart: hist maps a bucket's upper bound (µs) to its count. total,
// when above the sum of the counts, is the number of all observations (some beyond the last bound drawn), so the
// line stops below 1 instead of pretending the rest was fast.
type cdfSeries struct {
	name   string
	color  color.Color
	hist   map[float64]float64
	total  float64
	points bool // mark each bound: for coarse buckets, where a line between them would suggest more than is known
}

// cdfChart draws cumulative latency distributions on a logarithmic latency axis, so that the tail is visible.
func cdfChart(title string, series []cdfSeries, where string, args []string, legendLowerRight bool, path string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "share of requests answered"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	lo, hi := math.Inf(1), 0.0
	for _, s := range series {
		line, err := plotter.NewLine(cdf(s.hist, s.total))
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		for _, pt := range line.XYs {
			lo, hi = math.Min(lo, pt.X), math.Max(hi, pt.X)
		}
		line.Color = s.color
		line.Width = vg.Points(1.5)
		p.Add(line)
		if s.points {
			sc, err := plotter.NewScatter(line.XYs)
			if err != nil {
				return err
			}
			sc.Color = s.color
			p.Add(sc)
			p.Legend.Add(s.name, line, sc)
		} else {
			p.Legend.Add(s.name, line)
		}
	}
	if hi > 0 {
		// Whole decades: left to itself, a range of one value (one bucket) is padded below zero, which a log axis
		// cannot draw, and a tick label past the end of the range shrinks the plot to make room for it.
		p.X.Min, p.X.Max = decades(lo, hi)
	}
	// The upper left of a distribution is empty; so is the lower right, which suits a legend of many entries.
	p.Legend.Top, p.Legend.Left = !legendLowerRight, !legendLowerRight
	addCaption(p, where, args)
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}

// decades widens [lo, hi] (both > 0) to whole powers of ten.
func decades(lo, hi float64) (float64, float64) {
	l, h := math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	if h <= l {
		h = l * 10
	}
	return l, h
}

func cdf(h map[float64]float64, total float64) plotter.XYs {
	uppers := make([]float64, 0, len(h))
	sum := 0.0
	for u, n := range h {
		uppers = append(uppers, u)
		sum += n
	}
	total = math.Max(total, sum)
	sort.Float64s(uppers)
	pts := make(plotter.XYs, 0, len(uppers))
	seen := 0.0
	for _, u := range uppers {
		seen += h[u]
		pts = append(pts, plotter.XY{X: math.Max(u/1000, 0.001), Y: seen / total})
		if seen >= total {
			break // empty buckets above the slowest request would only stretch the axis
		}
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
// It goes under the title, not under the x axis: gonum/plot places a centred x-axis label at the arithmetic middle
// of the axis range when it makes room for it, which on a log axis lies near the right end, so a long label there
// squeezes the plot into the left two thirds of the image.
func addCaption(p *plot.Plot, where string, args []string) {
	p.Title.Text += "\n" + where
	if len(args) > 0 {
		p.Title.Text += fmt.Sprintf("; webhook flags %v", args)
	}
}

func contains[T comparable](xs []T, x T) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
