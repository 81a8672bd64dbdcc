package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The e2e evidence kinds (internal/evidence; the golden files in testdata are written by its tests, so the format
// the tests write and the one read here cannot drift apart unnoticed).
const (
	kindE2ELoad  = "e2e-load"
	kindE2EFault = "e2e-fault"
)

type e2eMachine struct {
	CPU       string  `json:"cpu"`
	Cores     int     `json:"cores"`
	LoadStart float64 `json:"loadAverageAtStart"`
	LoadEnd   float64 `json:"loadAverageAtEnd"`
}

func (m e2eMachine) where(started string) string {
	if t, err := time.Parse(time.RFC3339Nano, started); err == nil {
		started = t.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	return fmt.Sprintf("%s, %d cores, load average %.1f at start, %.1f at end; %s", m.CPU, m.Cores, m.LoadStart, m.LoadEnd, started)
}

// The subset of an "e2e-load" evidence file the charts read.
type e2eLoad struct {
	Name    string     `json:"name"`
	Title   string     `json:"title"`
	Started string     `json:"started"`
	Machine e2eMachine `json:"machine"`
	Phases  []struct {
		Name     string  `json:"name"`
		Writers  int     `json:"writers"`
		Seconds  float64 `json:"seconds"`
		Admitted int64   `json:"admitted"`
		Denied   int64   `json:"denied"`
		Failed   int64   `json:"failed"`
		Latency  []struct {
			UpperMicros float64 `json:"upperMicros"`
			Count       float64 `json:"count"`
		} `json:"latency"`
	} `json:"phases"`
	Admission []struct {
		Webhook string  `json:"webhook"`
		Phase   string  `json:"phase"`
		Count   float64 `json:"count"`
		Buckets []struct {
			LeSeconds  float64 `json:"leSeconds"`
			Cumulative float64 `json:"cumulative"`
		} `json:"buckets"`
	} `json:"admission"`
}

// The subset of an "e2e-fault" evidence file the charts read.
type e2eFault struct {
	Name    string     `json:"name"`
	Title   string     `json:"title"`
	Started string     `json:"started"`
	Machine e2eMachine `json:"machine"`
	Marks   []struct {
		Label       string  `json:"label"`
		FromSeconds float64 `json:"fromSeconds"`
		ToSeconds   float64 `json:"toSeconds"`
	} `json:"marks"`
	Samples []struct {
		AtSeconds     float64 `json:"atSeconds"`
		LatencyMillis float64 `json:"latencyMillis"`
		Outcome       string  `json:"outcome"`
	} `json:"samples"`
	Dropped int `json:"dropped"`
}

// The first phase is the one with our webhooks (red, as "apeiro-cmk" in the bench/load charts), the second the
// API server alone (blue, as "bare").
var phaseColors = []color.Color{colors["apeiro-cmk"], colors["bare"], color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}}

var palette = []color.Color{
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}, color.RGBA{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff},
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}, color.RGBA{R: 0xbc, G: 0xbd, B: 0x22, A: 0xff},
	color.RGBA{R: 0x17, G: 0xbe, B: 0xcf, A: 0xff}, color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
}

// e2eLoadCharts draws <prefix>-<name>-latency.png (client-side latency of every write, each phase) and, when the
// API server's histogram grew, <prefix>-<name>-admission.png (its admission latency per webhook).
func e2eLoadCharts(b []byte, out, prefix string) ([]string, error) {
	var l e2eLoad
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	if len(l.Phases) == 0 {
		return nil, fmt.Errorf("load evidence %q has no phases", l.Name)
	}
	name, err := safeName(l.Name)
	if err != nil {
		return nil, err
	}
	where := l.Machine.where(l.Started)
	var series []cdfSeries
	for i, ph := range l.Phases {
		h := map[float64]float64{}
		for _, pt := range ph.Latency {
			h[pt.UpperMicros] += pt.Count
		}
		if len(h) == 0 {
			continue
		}
		name := fmt.Sprintf("%s: %d admitted, %d denied, %d failed in %.1f s", ph.Name, ph.Admitted, ph.Denied, ph.Failed, ph.Seconds)
		series = append(series, cdfSeries{name: name, color: phaseColors[i%len(phaseColors)], hist: h})
	}
	writers := l.Phases[0].Writers
	path := filepath.Join(out, fmt.Sprintf("%s-%s-latency.png", prefix, name))
	if err := cdfChart(fmt.Sprintf("Write latency through the API server, %d writers (client side)", writers), series, where, nil, false, path); err != nil {
		return nil, err
	}
	written := []string{path}
	if len(l.Admission) == 0 {
		return written, nil
	}
	series = series[:0]
	for i, a := range l.Admission {
		// Per-bucket counts from the cumulative ones; what lies beyond the last finite bound is left to total.
		h := map[float64]float64{}
		prev := 0.0
		for _, bk := range a.Buckets {
			h[bk.LeSeconds*1e6] = bk.Cumulative - prev
			prev = bk.Cumulative
		}
		if a.Count <= 0 || len(h) == 0 {
			continue
		}
		series = append(series, cdfSeries{name: fmt.Sprintf("%s (%.0f calls)", strings.TrimSuffix(a.Webhook, ".cmk.apeiro.io"), a.Count), color: palette[i%len(palette)], hist: h, total: a.Count, points: true})
	}
	if len(series) == 0 {
		return written, nil
	}
	path = filepath.Join(out, fmt.Sprintf("%s-%s-admission.png", prefix, name))
	title := "Admission latency per webhook (<name>.cmk.apeiro.io), as the API server measures it (its histogram buckets)"
	if err := cdfChart(title, series, where, nil, len(series) > 2, path); err != nil {
		return nil, err
	}
	return append(written, path), nil
}

// Outcome glyphs of the fault charts: failures stand out (red crosses, drawn last, so on top).
var outcomes = []struct {
	name   string
	color  color.Color
	shape  draw.GlyphDrawer
	radius vg.Length
}{
	{"ok", color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, draw.CircleGlyph{}, vg.Points(2)},
	{"denied", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, draw.TriangleGlyph{}, vg.Points(2)},
	{"failed", color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, draw.CrossGlyph{}, vg.Points(4)},
}

var markFills = []color.Color{
	color.NRGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0x40}, color.NRGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0x40},
	color.NRGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0x40}, color.NRGBA{R: 0xbc, G: 0xbd, B: 0x22, A: 0x40},
}

// faultCharts draws <prefix>-<name>.png: every request's latency at the time it was sent, by outcome, with each
// marked stretch of the fault shaded.
func faultCharts(b []byte, out, prefix string) ([]string, error) {
	var f e2eFault
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	if len(f.Samples) == 0 {
		return nil, fmt.Errorf("fault evidence %q has no samples", f.Name)
	}
	pts := map[string]plotter.XYs{}
	lo, hi, xmax := math.Inf(1), 0.0, 0.0
	for _, s := range f.Samples {
		if !contains(outcomeNames(), s.Outcome) {
			return nil, fmt.Errorf("fault evidence %q: unknown outcome %q", f.Name, s.Outcome)
		}
		y := math.Max(s.LatencyMillis, 0.01) // a log axis has no zero
		pts[s.Outcome] = append(pts[s.Outcome], plotter.XY{X: s.AtSeconds, Y: y})
		lo, hi, xmax = math.Min(lo, y), math.Max(hi, y), math.Max(xmax, s.AtSeconds)
	}
	lo, _ = decades(lo, hi)
	hi *= 30 // room above the points for the legend
	p := plot.New()
	p.Title.Text = f.Title
	p.X.Label.Text = "time the request was sent (s since the run started)"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = lo, hi
	p.X.Min = 0
	p.Add(plotter.NewGrid())
	for i, m := range f.Marks {
		to := math.Max(m.ToSeconds, m.FromSeconds+0.02) // a very short stretch still shows
		poly, err := plotter.NewPolygon(plotter.XYs{{X: m.FromSeconds, Y: lo}, {X: to, Y: lo}, {X: to, Y: hi}, {X: m.FromSeconds, Y: hi}})
		if err != nil {
			return nil, err
		}
		poly.Color = markFills[i%len(markFills)]
		poly.LineStyle.Width = 0
		p.Add(poly)
		p.Legend.Add(fmt.Sprintf("%s (%.2f s)", m.Label, m.ToSeconds-m.FromSeconds), poly)
		xmax = math.Max(xmax, to)
	}
	p.X.Max = math.Max(xmax*1.02, 1) // one sample at 0 s still gets an axis
	for _, o := range outcomes {
		if len(pts[o.name]) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(pts[o.name])
		if err != nil {
			return nil, err
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: o.color, Radius: o.radius, Shape: o.shape}
		p.Add(sc)
		p.Legend.Add(fmt.Sprintf("%s (%d)", o.name, len(pts[o.name])), sc)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	where := f.Machine.where(f.Started)
	if f.Dropped > 0 {
		where += fmt.Sprintf("; %d samples beyond the recorder's bound not shown", f.Dropped)
	}
	addCaption(p, where, nil)
	name, err := safeName(f.Name)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(out, fmt.Sprintf("%s-%s.png", prefix, name))
	if err := p.Save(8*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return nil, err
	}
	return []string{path}, nil
}

func outcomeNames() []string {
	out := make([]string, len(outcomes))
	for i, o := range outcomes {
		out[i] = o.name
	}
	return out
}

// safeName checks an evidence name before it becomes part of a file name: the name comes from the file, and a file
// must not choose where its charts are written.
func safeName(n string) (string, error) {
	if n == "" || len(n) > 128 || strings.Contains(n, "..") || strings.IndexFunc(n, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return "", fmt.Errorf("evidence name %q: want letters, digits, '.', '_' or '-'", n)
	}
	return n, nil
}
