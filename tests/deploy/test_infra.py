"""infra/: what can be checked without the Bicep compiler (not installable from the registries
this project uses): the parameters file against the template's `param` lines, API versions, no
secret in parameters or outputs, app settings that docs/settings.md documents, and the hub
setting names the store expects."""

from __future__ import annotations

import json
import re
from pathlib import Path

from store.settings import HUB_SETTING_PREFIX, hub_setting_suffix

ROOT = Path(__file__).resolve().parents[2]
BICEP = (ROOT / "infra" / "main.bicep").read_text(encoding="utf-8")
PARAMETERS = json.loads((ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8"))
_PARAM = re.compile(r"^param (\w+) (\w+)(?: = (.+))?$", re.MULTILINE)
_RESOURCE = re.compile(r"^resource \w+ '([\w./]+)@([^']+)'", re.MULTILINE)
_OUTPUT = re.compile(r"^output .+$", re.MULTILINE)
_SECRET_WORDS = re.compile(r"key|secret|password|connectionstring", re.IGNORECASE)


def _code_only(text: str) -> str:
    """The template with comments and string contents removed (interpolations kept)."""
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)


def test_parameters_file_names_only_declared_parameters() -> None:
    """Every parameter given in main.parameters.json is declared in main.bicep, with a JSON type that fits."""
    declared = {name: kind for name, kind, _ in _PARAM.findall(BICEP)}
    given = PARAMETERS["parameters"]
    assert PARAMETERS["contentVersion"] == "1.0.0.0"
    assert set(given) <= set(declared), set(given) - set(declared)
    json_types = {"string": str, "array": list, "int": int, "bool": bool, "object": dict}
    for name, entry in given.items():
        assert isinstance(entry["value"], json_types[declared[name]]), name


def test_required_parameters_are_given() -> None:
    """A parameter without a default must be in the parameters file, or the one-line deploy prompts."""
    required = {name for name, _, default in _PARAM.findall(BICEP) if not default}
    assert required == {"namePrefix", "hubNames"}
    assert required <= set(PARAMETERS["parameters"])


def test_no_secure_parameter_and_no_secret_output() -> None:
    """Secrets come from listKeys inside the template and go only to Key Vault: never in or out."""
    assert "@secure()" not in BICEP
    params = [name for name, _, _ in _PARAM.findall(BICEP)]
    assert not [name for name in params if _SECRET_WORDS.search(name)]
    outputs = _OUTPUT.findall(BICEP)
    assert outputs
    for output in outputs:
        assert "listKeys" not in output, output
        assert not _SECRET_WORDS.search(output.split("=")[0]), output


def test_list_keys_values_only_reach_key_vault_and_dps() -> None:
    """Each listKeys() result is written into a Key Vault secret or a DPS hub link, nowhere else."""
    code = re.sub(r"//[^\n]*", "", BICEP)
    blocks = re.split(r"^(?=resource |output |var |param )", code, flags=re.MULTILINE)
    holders = [block.split("\n", 1)[0] for block in blocks if "listKeys(" in block]
    assert holders
    for header in holders:
        assert "Microsoft.KeyVault/vaults/secrets@" in header or (
            "Microsoft.Devices/provisioningServices@" in header
        ), header


def test_resources_have_dated_api_versions() -> None:
    """Every resource names a dated API version; the expected resource types are all there."""
    resources = dict(_RESOURCE.findall(BICEP))
    for kind, version in resources.items():
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}(-preview)?", version), (kind, version)
    assert {
        "Microsoft.Web/sites",
        "Microsoft.Web/serverfarms",
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Insights/components",
        "Microsoft.Devices/IotHubs",
        "Microsoft.Devices/provisioningServices",
        "Microsoft.KeyVault/vaults",
    } <= set(resources)


def test_brackets_balance() -> None:
    """Braces, brackets and parentheses balance outside strings and comments (a cheap parse check)."""
    code = _code_only(BICEP)
    stack: list[str] = []
    pairs = {"}": "{", "]": "[", ")": "("}
    for char in code:
        if char in "{[(":
            stack.append(char)
        elif char in pairs:
            assert stack, "unbalanced " + char
            assert stack.pop() == pairs[char], "unbalanced " + char
    assert stack == []


def test_app_settings_are_documented() -> None:
    """Every app setting the template sets has a row in docs/settings.md."""
    documented = set(
        re.findall(r"^\| `([^`]+)` \|", (ROOT / "docs" / "settings.md").read_text(), re.MULTILINE)
    )
    names = set(re.findall(r"name: '([A-Za-z_][A-Za-z0-9_]*)'\n\s+value:", BICEP))
    assert {"AzureWebJobsStorage", "ALLOCATION_POLICY_FILE"} <= names
    assert names <= documented, names - documented
    assert f"name: '{HUB_SETTING_PREFIX}${{" in BICEP
    assert any(row.startswith(HUB_SETTING_PREFIX) for row in documented)


def test_hub_setting_names_match_the_store() -> None:
    """The template's IOTHUB_CONNECTION_STRING__<HUB> naming is the store's hub_setting_suffix."""
    assert "toUpper(replace(replace('${hubName}.${iotHubDomain}', '-', '_'), '.', '_'))" in BICEP
    for hub in PARAMETERS["parameters"]["hubNames"]["value"]:
        assert re.fullmatch(r"[a-z0-9-]{3,50}", hub), hub  # IoT hub name rules
        host = f"{hub}.azure-devices.net"
        bicep_suffix = host.replace("-", "_").replace(".", "_").upper()
        assert bicep_suffix == hub_setting_suffix(host)


def test_python_version_matches_the_project() -> None:
    """The Function App runs the Python the project targets (3.11) on both hosting plans."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'target-version = "py311"' in pyproject
    assert "name: 'python'\n      version: '3.11'" in BICEP
    assert "linuxFxVersion: 'Python|3.11'" in BICEP


def test_global_names_default_to_a_resource_group_hash() -> None:
    """App, DPS, storage and vault names are global DNS labels: their defaults carry uniqueString."""
    defaults = {name: default for name, _, default in _PARAM.findall(BICEP)}
    for param in ("functionAppName", "dpsName"):
        assert "uniqueString(resourceGroup().id)" in defaults[param], param
    variables = dict(re.findall(r"^var (\w+) = (.+)$", BICEP, re.MULTILINE))
    for var in ("storageName", "vaultName"):
        assert "${suffix}" in variables[var], var
    assert "uniqueString(resourceGroup().id" in variables["suffix"]


def test_hub_tls12_enforcement_is_opt_in() -> None:
    """minTlsVersion 1.2 fails hub creation outside a few regions, so it sits behind a false-by-default flag."""
    defaults = {name: default for name, _, default in _PARAM.findall(BICEP)}
    assert defaults["hubEnforceTls12"] == "false"
    hubs = BICEP.split("'Microsoft.Devices/IotHubs@", 1)[1].split("\n]\n", 1)[0]
    assert "properties: hubEnforceTls12 ? { minTlsVersion: '1.2' } : {}" in hubs
    assert hubs.count("minTlsVersion") == 1


def test_secret_settings_are_key_vault_references() -> None:
    """The settings that hold keys (storage, replay signing key, hub connection strings) are set
    from Key Vault references to secrets the template writes; the replay key is derived, not a
    parameter, so redeploying keeps it."""
    for setting, secret in (
        ("AzureWebJobsStorage", "${storageSecretName}"),
        ("REPLAY_SIGNING_KEY", "${replaySecretName}"),
    ):
        block = re.search(rf"name: '{setting}'\n\s+value: '([^']+)'", BICEP)
        assert block, setting
        assert (
            block.group(1) == f"@Microsoft.KeyVault(VaultName=${{vaultName}};SecretName={secret})"
        )
    replay = re.search(r"resource replaySecret [^\n]+\n(?:.+\n)+?}\n", BICEP)
    assert replay
    assert "guid(storage.listKeys()" in replay.group(0)
    assert "newGuid" not in _code_only(BICEP)
