package durably_test

import (
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// repoFiles lists the repository's files whose name has one of the
// suffixes, leaving out dependencies (node_modules) and hidden directories.
func repoFiles(t *testing.T, suffixes ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		for _, s := range suffixes {
			if strings.HasSuffix(path, s) {
				out = append(out, filepath.ToSlash(path))
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	mdHeading = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *#*$`)
	mdAnchor  = regexp.MustCompile(`<a (?:id|name)="([^"]+)"`)
	mdFence   = regexp.MustCompile("(?ms)^ *```.*?^ *```")
)

// anchors are the fragments a Markdown file has, as GitHub makes them: one
// per heading (lower case, punctuation dropped, spaces as hyphens, a
// repeated one numbered) and one per <a id>.
func anchors(md string) map[string]bool {
	md = mdFence.ReplaceAllString(md, "") // a "# comment" in a code block is no heading
	out := map[string]bool{}
	for _, m := range mdHeading.FindAllStringSubmatch(md, -1) {
		slug := headingSlug(m[1])
		a := slug
		for n := 1; out[a]; n++ {
			a = slug + "-" + strconv.Itoa(n)
		}
		out[a] = true
	}
	for _, m := range mdAnchor.FindAllStringSubmatch(md, -1) {
		out[m[1]] = true
	}
	return out
}

// headingSlug is GitHub's anchor of a heading's text.
func headingSlug(text string) string {
	text = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(text, "$1") // a link's text
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestDocLinks: every relative link of every Markdown file of the
// repository names a file of the repository, and every #fragment a
// heading (or <a id>) of the file it points into, so that a clone can
// follow them all.
func TestDocLinks(t *testing.T) {
	docs := repoFiles(t, ".md")
	if len(docs) < 5 {
		t.Fatalf("found %d Markdown files", len(docs))
	}
	anchorsOf := map[string]map[string]bool{}
	for _, md := range docs {
		anchorsOf[md] = anchors(readFile(t, md))
	}
	for _, md := range docs {
		text := readFile(t, md)
		for _, m := range mdLink.FindAllStringSubmatch(mdFence.ReplaceAllString(text, ""), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, fragment, _ := strings.Cut(target, "#")
			path := md
			if file != "" {
				path = filepath.ToSlash(filepath.Join(filepath.Dir(md), file))
				if rel, err := filepath.Rel(".", path); err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("%s links %s, outside the repository", md, target)
					continue
				}
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s links %s, which does not exist", md, target)
					continue
				}
			}
			if fragment == "" {
				continue
			}
			if a, ok := anchorsOf[path]; !ok {
				t.Errorf("%s links %s: a fragment of a file that is not Markdown", md, target)
			} else if !a[fragment] {
				t.Errorf("%s links %s, but %s has no heading with that anchor", md, target, path)
			}
		}
		if md != "BENCHMARKS.md" && strings.Contains(text, "../shared/") { // BENCHMARKS.md names the peers' harnesses it was measured with
			t.Errorf("%s refers to ../shared/, which a clone does not have", md)
		}
	}
}

// sectionRef matches a comment's pointer to a section of a document:
// docs/contract.md ("Events"), ARCHITECTURE.md, "Adding a store", or the
// README's name and a heading in quotes.
var sectionRef = regexp.MustCompile(`\b(README|ARCHITECTURE|BENCHMARKS|docs/[\w-]+)(?:\.md)?(?:'s)?[ ,(]*"([^"]+)"`)

// commentText is the text of a file's comments, each line without its
// comment marker, joined by spaces so that a reference may span lines.
func commentText(t *testing.T, path string) string {
	t.Helper()
	src := readFile(t, path)
	var parts []string
	if strings.HasSuffix(path, ".go") {
		fset := token.NewFileSet()
		var s scanner.Scanner
		s.Init(fset.AddFile(path, -1, len(src)), []byte(src), nil, scanner.ScanComments)
		for {
			_, tok, lit := s.Scan()
			if tok == token.EOF {
				break
			}
			if tok == token.COMMENT {
				for _, line := range strings.Split(lit, "\n") {
					parts = append(parts, strings.TrimLeft(strings.TrimSpace(line), "/*"))
				}
			}
		}
	} else {
		for _, line := range strings.Split(src, "\n") {
			if _, c, ok := strings.Cut(line, "#"); ok {
				parts = append(parts, c)
			}
		}
	}
	return strings.Join(strings.Fields(strings.Join(parts, " ")), " ")
}

// TestDocSectionReferences: a comment (in Go, YAML, the Makefile or a
// script) that sends the reader to a named section of one of the
// project's documents names a section that document has.
func TestDocSectionReferences(t *testing.T) {
	headings := map[string]map[string]bool{}
	for _, md := range repoFiles(t, ".md") {
		h := map[string]bool{}
		for _, m := range mdHeading.FindAllStringSubmatch(mdFence.ReplaceAllString(readFile(t, md), ""), -1) {
			h[strings.Trim(m[1], "`")] = true
		}
		headings[strings.TrimSuffix(md, ".md")] = h
	}
	found := 0
	for _, path := range repoFiles(t, ".go", ".yaml", ".yml", "Makefile", ".sh", ".conf", "/run") {
		if strings.Contains(path, "/testdata/") {
			continue
		}
		for _, m := range sectionRef.FindAllStringSubmatch(commentText(t, path), -1) {
			found++
			h, ok := headings[m[1]]
			switch {
			case !ok:
				t.Errorf("%s sends the reader to %s.md, which does not exist", path, m[1])
			case !h[m[2]]:
				t.Errorf("%s sends the reader to %s.md, %q: no such section", path, m[1], m[2])
			}
		}
	}
	if found < 3 {
		t.Fatalf("found %d references to sections: the pattern no longer matches how comments cite them", found)
	}
}

// codeBlock matches a fenced code block and its language.
var codeBlock = regexp.MustCompile("(?ms)^```(\\w+)\\n(.*?)^```")

// elision begins a line that leaves code out of a block (and may say
// what): the block's parts around it are excerpts of one file, in order.
const elision = "// …"

func isElision(line string) bool { return strings.HasPrefix(line, elision) }

// codeLines are the non-empty lines of code, without indentation, so that
// an excerpt matches at any depth of its file.
func codeLines(code string) []string {
	var out []string
	for _, l := range strings.Split(code, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// excerptOf reports whether block, its parts split at elisions, is found
// in file: each part as consecutive lines, the parts in order.
func excerptOf(block, file []string) bool {
	from := 0
	for len(block) > 0 {
		part := block
		if cut := slices.IndexFunc(block, isElision); cut >= 0 {
			part, block = block[:cut], block[cut+1:]
		} else {
			block = nil
		}
		i := indexOf(file[from:], part)
		if i < 0 {
			return false
		}
		from += i + len(part)
	}
	return true
}

// indexOf is where lines start in file as consecutive lines, or -1.
func indexOf(file, lines []string) int {
	for i := 0; i+len(lines) <= len(file); i++ {
		if slices.Equal(file[i:i+len(lines)], lines) {
			return i
		}
	}
	return -1
}

// TestDocGoBlocks: every Go (and TypeScript) block of the README and the
// guides is an excerpt of a file of the repository that the suite
// compiles (docs/examples_test.go holds those no program runs), so that
// what the documents show compiles against the code as it is. A block
// may leave lines out with a line "// …" between its parts.
func TestDocGoBlocks(t *testing.T) {
	sources := map[string][][]string{}
	for lang, suffixes := range map[string][]string{"go": {".go"}, "ts": {".ts", ".mjs"}} {
		for _, f := range repoFiles(t, suffixes...) {
			sources[lang] = append(sources[lang], codeLines(readFile(t, f)))
		}
	}
	blocks := 0
	for _, md := range repoFiles(t, ".md") {
		for _, m := range codeBlock.FindAllStringSubmatch(readFile(t, md), -1) {
			files, ok := sources[m[1]]
			if !ok {
				continue
			}
			blocks++
			block := codeLines(m[2])
			if !slices.ContainsFunc(files, func(f []string) bool { return excerptOf(block, f) }) {
				t.Errorf("%s: this %s block is not an excerpt of a file of the repository (add it to docs/examples_test.go, or copy what the code says):\n%s", md, m[1], m[2])
			}
		}
	}
	if blocks < 10 {
		t.Fatalf("found %d code blocks", blocks)
	}
}
