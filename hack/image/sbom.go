package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"time"
)

// SPDX 2.3 JSON, the subset this image needs (https://spdx.github.io/spdx-spec/v2.3/).
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name             string            `json:"name"`
	SPDXID           string            `json:"SPDXID"`
	VersionInfo      string            `json:"versionInfo,omitempty"`
	DownloadLocation string            `json:"downloadLocation"`
	FilesAnalyzed    bool              `json:"filesAnalyzed"`
	PrimaryPurpose   string            `json:"primaryPackagePurpose,omitempty"`
	Checksums        []spdxChecksum    `json:"checksums,omitempty"`
	ExternalRefs     []spdxExternalRef `json:"externalRefs,omitempty"`
	LicenseConcluded string            `json:"licenseConcluded"`
	LicenseDeclared  string            `json:"licenseDeclared"`
	CopyrightText    string            `json:"copyrightText"`
	Comment          string            `json:"comment,omitempty"`
}

type spdxChecksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type spdxExternalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// sbomBinary is one Go binary of the image and its path there.
type sbomBinary struct {
	ImagePath string // e.g. /plugins/keystore-aws
	File      string // on disk
	SHA256    string
}

// sbomDeb is one Debian package of the base layer.
type sbomDeb struct {
	Pkg debPackage
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func spdxID(kind, s string) string {
	return "SPDXRef-" + kind + "-" + spdxIDUnsafe.ReplaceAllString(s, "-")
}

// buildSBOM describes the image: each binary (with the Go toolchain and main module from its build info), every
// Go module linked into any binary (path, version, go.sum hash) and each Debian package of the base layer.
// Everything comes from the binaries and debian.lock, so the document is as reproducible as the image.
func buildSBOM(imageName, version, revision, source string, created time.Time, bins []sbomBinary, debs []sbomDeb) ([]byte, error) {
	doc := spdxDocument{
		SPDXVersion: "SPDX-2.3",
		DataLicense: "CC0-1.0",
		SPDXID:      "SPDXRef-DOCUMENT",
		Name:        imageName + "-" + version,
		CreationInfo: spdxCreationInfo{
			Created:  created.UTC().Format(time.RFC3339),
			Creators: []string{"Organization: apeiro-cmk", "Tool: apeiro-cmk-hack-image"},
		},
	}
	imageID := "SPDXRef-Image"
	doc.Packages = append(doc.Packages, spdxPackage{
		Name: imageName, SPDXID: imageID, VersionInfo: version, DownloadLocation: source, PrimaryPurpose: "CONTAINER",
		LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
		Comment: "revision " + revision,
	})
	doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", imageID})

	modules := map[string]spdxPackage{} // SPDXID -> package, shared between binaries
	for _, b := range bins {
		info, err := buildinfo.ReadFile(b.File)
		if err != nil {
			return nil, fmt.Errorf("reading the Go build info of %s: %w", b.File, err)
		}
		binID := spdxID("Binary", b.ImagePath)
		doc.Packages = append(doc.Packages, spdxPackage{
			Name: b.ImagePath, SPDXID: binID, VersionInfo: version, DownloadLocation: "NOASSERTION",
			PrimaryPurpose: "APPLICATION", Checksums: []spdxChecksum{{"SHA256", b.SHA256}},
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
			Comment: "Go package " + info.Path + ", built with " + info.GoVersion + buildSettings(info),
		})
		doc.Relationships = append(doc.Relationships, spdxRelationship{imageID, "CONTAINS", binID})
		deps := []*debug.Module{{Path: "stdlib", Version: info.GoVersion}, &info.Main}
		deps = append(deps, info.Deps...)
		for i, m := range deps {
			p := modulePackage(m)
			if i == 1 {
				// The main module: built from the checked-out tree (its version is derived from the commit and says
				// "+dirty" for a modified tree), not downloaded from the module proxy.
				p.DownloadLocation = "NOASSERTION"
				p.Comment = "the module the binaries are built from; " + source + " at revision " + revision
			}
			if _, ok := modules[p.SPDXID]; !ok {
				modules[p.SPDXID] = p
			}
			doc.Relationships = append(doc.Relationships, spdxRelationship{binID, "DEPENDS_ON", p.SPDXID})
		}
	}
	ids := make([]string, 0, len(modules))
	for id := range modules {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		doc.Packages = append(doc.Packages, modules[id])
	}
	for _, d := range debs {
		id := spdxID("Deb", d.Pkg.Name)
		doc.Packages = append(doc.Packages, spdxPackage{
			Name: d.Pkg.Name, SPDXID: id, VersionInfo: d.Pkg.Version, DownloadLocation: "NOASSERTION",
			PrimaryPurpose: "OPERATING-SYSTEM", Checksums: []spdxChecksum{{"SHA256", d.Pkg.SHA256}},
			ExternalRefs: []spdxExternalRef{{"PACKAGE-MANAGER", "purl",
				"pkg:deb/debian/" + d.Pkg.Name + "@" + d.Pkg.Version + "?arch=" + d.Pkg.Arch + "&distro=debian-12"}},
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
			Comment: "checksum: SHA-256 of the .deb pinned in hack/image/debian.lock",
		})
		doc.Relationships = append(doc.Relationships, spdxRelationship{imageID, "CONTAINS", id})
	}
	// The namespace must be unique per document; a hash of the content makes it unique and reproducible.
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	doc.DocumentNamespace = strings.TrimSuffix(source, "/") + "/spdx/" + version + "-" + hex.EncodeToString(sum[:8])
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// modulePackage turns one module of a binary's build info into an SPDX package. A replaced module is listed with
// the replacement's version and hash (what is actually linked) and names the original in its comment. The go.sum
// hash ("h1:" + base64 SHA-256 of the module's file tree) is given as SHA256 in hex and verbatim in the comment.
func modulePackage(m *debug.Module) spdxPackage {
	path, version, sum, comment := m.Path, m.Version, m.Sum, ""
	if m.Replace != nil {
		comment = "replaces " + m.Path + " " + m.Version + "; "
		path, version, sum = m.Replace.Path, m.Replace.Version, m.Replace.Sum
	}
	p := spdxPackage{
		Name: path, SPDXID: spdxID("Go", path+"@"+version), VersionInfo: version, DownloadLocation: "NOASSERTION",
		PrimaryPurpose: "LIBRARY", LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
	}
	if m.Path == "stdlib" {
		p.ExternalRefs = []spdxExternalRef{{"PACKAGE-MANAGER", "purl", "pkg:golang/stdlib@" + version}}
		p.Comment = "the Go standard library and runtime"
		return p
	}
	if version != "" && version != "(devel)" {
		// purl: "+" (e.g. +incompatible) must be percent-encoded in the version.
		p.ExternalRefs = []spdxExternalRef{{"PACKAGE-MANAGER", "purl", "pkg:golang/" + path + "@" + strings.ReplaceAll(version, "+", "%2B")}}
		p.DownloadLocation = "https://proxy.golang.org/" + path + "/@v/" + version + ".zip"
	}
	if raw, ok := strings.CutPrefix(sum, "h1:"); ok {
		if b, err := base64.StdEncoding.DecodeString(raw); err == nil && len(b) == sha256.Size {
			p.Checksums = []spdxChecksum{{"SHA256", hex.EncodeToString(b)}}
		}
		comment += "go.sum " + sum
	} else if version == "(devel)" || version == "" {
		comment += "the module the binary was built from (no go.sum hash)"
	}
	p.Comment = comment
	return p
}

// buildSettings names the settings that matter to a reader of the SBOM (cgo, VCS revision), in a fixed order.
func buildSettings(info *buildinfo.BuildInfo) string {
	want := map[string]bool{"CGO_ENABLED": true, "vcs.revision": true, "vcs.modified": true, "-trimpath": true}
	var parts []string
	for _, s := range info.Settings {
		if want[s.Key] {
			parts = append(parts, s.Key+"="+s.Value)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
