"""docs/configuration.md is the truth about the configuration: its example loads, and
every key the loader knows is documented there."""

from __future__ import annotations

import re
from pathlib import Path

from proxy import config as config_module
from proxy.config import load_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_documented_example_loads_with_the_defaults(tmp_path: Path) -> None:
    text = DOC.read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.S)
    assert example is not None
    path = tmp_path / "recproxy.toml"
    path.write_text(example.group(1))
    documented = load_config(path)
    defaults = load_config(None, cwd=tmp_path)
    assert documented.sip == defaults.sip
    assert documented.routing == defaults.routing
    assert documented.media == defaults.media
    assert documented.dtmf == defaults.dtmf
    assert documented.numbers == defaults.numbers
    assert documented.recording == defaults.recording
    assert documented.access == defaults.access


def test_every_key_is_documented() -> None:
    text = DOC.read_text()
    schema = config_module._schema(Path("/"))
    nested = {
        "routing.rules": config_module._rule_keys(config_module.NumberSettings()),
        "services.NAME": config_module._service_keys(Path("/")),
        "operators": config_module._operator_keys(),
        "recording.s3": config_module._s3_keys(Path("/")),  # issue 20
    }
    for section, keys in [*schema.items(), *nested.items()]:
        heading = f"## `[{section}]`" if section in schema else None
        assert heading is None or heading in text, f"no section {section} in {DOC.name}"
        for key in keys:
            assert f"| `{key}` |" in text, f"{section}.{key} is not documented"
