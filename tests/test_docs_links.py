"""Every relative link in README.md, BENCHMARKS.md and docs/**/*.md
resolves.

Markdown links `[text](target)` and images `![alt](target)` are read from
each file (fenced and indented code blocks and inline code spans skipped);
http(s), mailto and other URL schemes are not checked. A target's path
must exist relative to the file that links it; its `#anchor`, if any, must
be a heading of the target markdown file (or of the file itself for a bare
`#anchor`), with GitHub's slug rules: lowercase, punctuation other than
'-' and '_' dropped, spaces to '-', '-1', '-2', ... for repeated headings.
Standard library and pytest only.
"""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# [text](target "title"), text possibly over lines (not across a blank one)
_LINK = re.compile(r"!?\[(?:[^\[\]\n]|\n(?!\n)|\[[^\[\]\n]*\])*\]"
                   r"\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")


def markdown_files(root=ROOT):
  """README.md, BENCHMARKS.md and every .md under docs/, as paths relative
  to root."""
  files = [name for name in ("README.md", "BENCHMARKS.md")
           if os.path.exists(os.path.join(root, name))]
  for dirpath, dirnames, filenames in os.walk(os.path.join(root, "docs")):
    dirnames.sort()
    for name in sorted(filenames):
      if name.endswith(".md"):
        files.append(os.path.relpath(os.path.join(dirpath, name), root))
  return files


def _prose_lines(text, blank_code_spans=True):
  """(line number, line) outside fenced and indented code blocks, with
  inline code spans blanked unless blank_code_spans is False."""
  fence = None
  previous_blank = True
  in_indented = False
  for number, line in enumerate(text.splitlines(), 1):
    match = _FENCE.match(line)
    if fence:
      if match and match.group(1)[0] == fence[0] and \
          len(match.group(1)) >= len(fence):
        fence = None
      continue
    if match:
      fence = match.group(1)
      continue
    blank = not line.strip()
    # an indented code block starts after a blank line (not inside a list
    # item's continuation, which this simple reader treats as code too:
    # links there are skipped, never wrongly reported)
    if line.startswith(("    ", "\t")) and (previous_blank or in_indented):
      in_indented = True
      previous_blank = blank
      continue
    if not blank:
      in_indented = False
    previous_blank = blank
    yield number, (re.sub(r"(`+)(?:(?!\1).)+?\1", "", line)
                   if blank_code_spans else line)


def links(text):
  """(line number, target) of every link and image in markdown text; a
  link's text may run over several lines."""
  lines = text.count("\n") + 1
  prose = [""] * lines
  for number, line in _prose_lines(text):
    prose[number - 1] = line
  joined = "\n".join(prose)
  for match in _LINK.finditer(joined):
    yield joined.count("\n", 0, match.start()) + 1, match.group(1)


def slug(heading):
  """GitHub's anchor for a heading's text."""
  text = re.sub(r"<[^>]+>", "", heading)               # inline html
  text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links: their text
  text = text.replace("`", "").strip().lower()
  text = re.sub(r"[^\w\- ]", "", text)                 # punctuation but - _
  return text.replace(" ", "-")


def anchors(text):
  """The set of anchors GitHub makes for the headings of markdown text."""
  seen = {}
  result = set()
  for _, line in _prose_lines(text, blank_code_spans=False):
    match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
    if not match:
      continue
    base = slug(match.group(1))
    count = seen.get(base, 0)
    seen[base] = count + 1
    result.add(base if count == 0 else f"{base}-{count}")
  return result


def broken_links(root=ROOT, files=None):
  """'file:line: target (why)' for every relative link that does not
  resolve."""
  problems = []
  anchor_cache = {}

  def anchors_of(path):
    if path not in anchor_cache:
      with open(path, encoding="utf-8") as f:
        anchor_cache[path] = anchors(f.read())
    return anchor_cache[path]

  for rel in files if files is not None else markdown_files(root):
    source = os.path.join(root, rel)
    with open(source, encoding="utf-8") as f:
      text = f.read()
    for number, target in links(text):
      if _SCHEME.match(target) or target.startswith("//"):
        continue  # http(s), mailto, ...: not checked here
      path, _, anchor = target.partition("#")
      path = path.split("?")[0]
      resolved = (os.path.normpath(os.path.join(os.path.dirname(source),
                                                path))
                  if path else source)
      where = f"{rel}:{number}: {target}"
      if not os.path.exists(resolved):
        problems.append(f"{where} (no such file)")
        continue
      if not os.path.realpath(resolved).startswith(
          os.path.realpath(root) + os.sep):
        problems.append(f"{where} (outside the repository)")
        continue
      if anchor and resolved.endswith(".md") and os.path.isfile(resolved):
        if anchor.lower() not in anchors_of(resolved):
          problems.append(f"{where} (no heading #{anchor} there)")
  return problems


def test_every_relative_link_resolves():
  files = markdown_files()
  assert "README.md" in files and len(files) > 1, files
  problems = broken_links(files=files)
  assert not problems, "broken links:\n" + "\n".join(problems)


def test_a_broken_link_is_reported(tmp_path):
  (tmp_path / "docs" / "guide").mkdir(parents=True)
  (tmp_path / "docs" / "guide" / "data.md").write_text(
      "# Data\n\n## Where TFDS looks\n\ntext\n")
  (tmp_path / "README.md").write_text(
      "# Lab\n\n"
      "[fine](docs/guide/data.md) and [anchor](docs/guide/data.md#where-tfds-looks)\n"
      "[self](#lab) ![img](docs/missing.png) [gone](docs/guide/models.md)\n"
      "[bad anchor](docs/guide/data.md#where-data-lives)\n"
      "[a link over\ntwo lines](docs/guide/gone.md)\n"
      "[web](https://example.com/x) [mail](mailto:a@b.c)\n"
      "`[in code](docs/nothing.md)`\n\n"
      "```\n[in a fence](docs/nothing.md)\n```\n")
  problems = broken_links(root=str(tmp_path))
  assert problems == [
      "README.md:4: docs/missing.png (no such file)",
      "README.md:4: docs/guide/models.md (no such file)",
      "README.md:5: docs/guide/data.md#where-data-lives "
      "(no heading #where-data-lives there)",
      "README.md:6: docs/guide/gone.md (no such file)",
  ], problems


@pytest.mark.parametrize("heading, expected", [
    ("Train, resume, evaluate", "train-resume-evaluate"),
    ("The `study` section: any fields", "the-study-section-any-fields"),
    ("GPUs, several devices, clusters", "gpus-several-devices-clusters"),
    ("Seeds side by side (`config.seed_parallelism`)",
     "seeds-side-by-side-configseed_parallelism"),
    ("Small data: 1,000 labels", "small-data-1000-labels"),
])
def test_slug_follows_github(heading, expected):
  assert slug(heading) == expected


def test_repeated_headings_get_numbered_anchors():
  assert anchors("# A\n## Notes\n## Notes\n") == {"a", "notes", "notes-1"}


def test_anchors_keep_code_spans_and_skip_code_blocks():
  text = ("## Seeds side by side (`config.seed_parallelism`)\n\n"
          "```\n# not a heading\n```\n\n    # nor this\n")
  assert anchors(text) == {"seeds-side-by-side-configseed_parallelism"}
