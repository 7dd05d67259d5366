"""The webhook receiver's spec cache: specs are parsed again only when a spec file changes, and then at once."""

import os

from release_orchestrator.webhooks import runs

SPEC = """\
pipeline:
  name: {name}
  triggers:
    - provider: github
      repository: acme/{name}
      push: {{branches: {{includes: [main]}}}}
  stages:
    - name: Source
      actions:
        - name: Checkout
          type: source.github
          namespace: Source
          configuration: {{repository: acme/{name}, branch: main}}
"""


def cache_for(tmp_path, parses):
    from release_orchestrator.pipeline import loader

    cache = runs.SpecCache(dirs=lambda: [str(tmp_path), str(tmp_path / "missing")])
    real = loader.load_specs

    def counting(dirs):
        parses.append(list(dirs))
        return real(dirs)

    return cache, counting


def test_specs_are_parsed_once_until_a_file_changes(tmp_path, monkeypatch):
    from release_orchestrator.pipeline import loader

    parses: list = []
    cache, counting = cache_for(tmp_path, parses)
    monkeypatch.setattr(loader, "load_specs", counting)
    (tmp_path / "web.yaml").write_text(SPEC.format(name="web"))

    assert [p.name for p in cache.pipelines()] == ["web"]
    assert [p.name for p in cache.pipelines()] == ["web"]
    assert len(parses) == 1  # the missing directory is skipped, not an error

    (tmp_path / "api.yaml").write_text(SPEC.format(name="api"))  # a new file
    assert sorted(p.name for p in cache.pipelines()) == ["api", "web"]

    spec = tmp_path / "web.yaml"  # a rewrite with the same size and, on coarse clocks, the same mtime
    before = spec.stat()
    spec.write_text(SPEC.format(name="wep"))
    os.utime(spec, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    assert sorted(p.name for p in cache.pipelines()) == ["api", "wep"]

    (tmp_path / "api.yaml").unlink()  # a removed file
    assert [p.name for p in cache.pipelines()] == ["wep"]
    assert len(parses) == 4


def test_a_spec_broken_later_drops_only_that_pipeline(tmp_path):
    cache = runs.SpecCache(dirs=lambda: [str(tmp_path)])
    (tmp_path / "web.yaml").write_text(SPEC.format(name="web"))
    (tmp_path / "api.yaml").write_text(SPEC.format(name="api"))
    assert sorted(p.name for p in cache.pipelines()) == ["api", "web"]

    (tmp_path / "api.yaml").write_text("pipeline: [not, a, mapping]\n")
    assert [p.name for p in cache.pipelines()] == ["web"]
