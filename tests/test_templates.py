"""The Serverless Devs templates for the three ways to deploy: FC 3.0 built-in runtime
(``s.yaml``), FC 2.0 (``s.fc2.yaml``) and a web function (``s.web.yaml``).

Their keys are checked against Serverless Devs' documented schemas (the fc3 component's
``src/schema.json``; the FC 2.0 ``fc`` component's ``docs/zh/yaml.md``), written out here as the
keys each object may have and must have; their handler and hook names against the example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.fastapi_app import main
from fc_bridge import Bridge
from fc_bridge.local.target import load_bridge

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app"

# fc3 (FC 3.0): props, and the nested objects the templates use.
FC3 = {
    "props": (
        {
            "asyncInvokeConfig", "code", "cpu", "customContainerConfig", "customDNS",
            "customRuntimeConfig", "description", "diskSize", "endpoint", "environmentVariables",
            "functionName", "gpuConfig", "handler", "instanceConcurrency",
            "instanceLifecycleConfig", "internetAccess", "layers", "logConfig", "memorySize",
            "nasConfig", "ossMountConfig", "region", "role", "runtime", "timeout",
            "tracingConfig", "triggers", "vpcBinding", "vpcConfig",
        },
        {"functionName", "region", "runtime", "code"},
    ),
    "instanceLifecycleConfig": ({"initializer", "preStop"}, set()),
    "hook": ({"handler", "timeout"}, set()),
    "customRuntimeConfig": ({"args", "command", "healthCheckConfig", "port"}, set()),
    "trigger": (
        {"description", "invocationRole", "qualifier", "sourceArn", "triggerConfig",
         "triggerName", "triggerType"},
        {"triggerConfig", "triggerName", "triggerType"},
    ),
    "httpTriggerConfig": (
        {"authConfig", "authType", "disableURLInternet", "methods"},
        {"authType", "methods"},
    ),
}  # fmt: skip
FC3_RUNTIMES = {"python3.10", "python3.12", "custom.debian10", "custom.debian11", "custom.debian12"}
HTTP_METHODS = {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}
# fc (FC 2.0): region, service, function, triggers.
FC2 = {
    "props": ({"region", "service", "function", "triggers", "customDomains"}, {"region"}),
    "service": (
        {"name", "description", "internetAccess", "tracingConfig", "role", "logConfig",
         "vpcConfig", "nasConfig"},
        {"name"},
    ),
    "function": (
        {"name", "description", "codeUri", "ossBucket", "ossKey", "handler", "memorySize",
         "runtime", "timeout", "caPort", "customContainerConfig", "environmentVariables",
         "initializationTimeout", "initializer", "instanceConcurrency", "instanceType", "layers",
         "instanceLifecycleConfig", "asyncConfiguration", "customDNS"},
        {"name", "runtime"},
    ),
    "instanceLifecycleConfig": ({"preFreeze", "preStop"}, set()),
    "hook": ({"handler", "timeout"}, set()),
    "trigger": ({"name", "type", "role", "sourceArn", "qualifier", "config"}, {"name", "type"}),
    "httpTriggerConfig": ({"authType", "methods"}, {"authType", "methods"}),
}  # fmt: skip


def check(kind: str, value: dict[str, Any], schema: dict[str, Any]) -> None:
    allowed, required = schema[kind]
    assert set(value) <= allowed, f"{kind}: unknown keys {sorted(set(value) - allowed)}"
    assert required <= set(value), f"{kind}: missing {sorted(required - set(value))}"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLE / name).read_text())
    return document


def attribute(name: str) -> Any:
    module, _, attr = name.partition(".")
    assert module == "main", name
    return getattr(main, attr)


@pytest.mark.parametrize("name", ["s.yaml", "s.web.yaml"])
def test_fc3_templates_have_the_fc3_components_keys(name: str) -> None:
    document = load(name)
    assert document["edition"] == "3.0.0"
    [resource] = document["resources"].values()
    assert resource["component"] == "fc3"
    props = resource["props"]
    check("props", props, FC3)
    assert props["runtime"] in FC3_RUNTIMES
    assert props["code"] == "./function.zip"  # what fc-bridge package builds
    lifecycle = props["instanceLifecycleConfig"]
    check("instanceLifecycleConfig", lifecycle, FC3)
    for hook in lifecycle.values():
        check("hook", hook, FC3)
    for trigger in props["triggers"]:
        check("trigger", trigger, FC3)
        check("httpTriggerConfig", trigger["triggerConfig"], FC3)
        assert set(trigger["triggerConfig"]["methods"]) <= HTTP_METHODS


def test_the_fc3_built_in_template_names_the_handler_and_its_hooks() -> None:
    props = load("s.yaml")["resources"]["fastapi-example"]["props"]
    assert props["runtime"] == "python3.12"
    assert isinstance(attribute(props["handler"]), Bridge)
    hooks = props["instanceLifecycleConfig"]
    assert attribute(hooks["initializer"]["handler"]) == main.handler.initializer
    assert attribute(hooks["preStop"]["handler"]) == main.handler.pre_stop


def test_the_web_template_runs_fc_bridge_serve_on_fcs_port() -> None:
    props = load("s.web.yaml")["resources"]["fastapi-web"]["props"]
    check("customRuntimeConfig", props["customRuntimeConfig"], FC3)
    command = props["customRuntimeConfig"]["command"]
    assert command[:4] == ["python3", "-m", "fc_bridge.local", "serve"]
    assert command[command.index("--mode") + 1] == "web"
    assert "--behind-fc" in command  # else every request FC forwards is refused (x-fc-* headers)
    assert command[command.index("--host") + 1] == "0.0.0.0"  # 127.0.0.1 fails on FC
    assert command[4] == "main:handler"  # PYTHONPATH is the unpacked zip, main.py at its top
    assert load_bridge("examples.fastapi_app." + command[4]) is main.handler
    assert props["customRuntimeConfig"]["port"] == 9000
    assert props["environmentVariables"]["PYTHONPATH"] == "/code"  # where FC unpacks the zip


def test_the_fc2_template_has_the_fc_components_keys_and_names_the_hooks() -> None:
    document = load("s.fc2.yaml")
    assert document["edition"] == "1.0.0"
    [service] = document["services"].values()
    assert service["component"] == "devsapp/fc"
    props = service["props"]
    check("props", props, FC2)
    check("service", props["service"], FC2)
    function = props["function"]
    check("function", function, FC2)
    assert (function["runtime"], function["codeUri"]) == ("python3.10", "./function.zip")
    assert isinstance(attribute(function["handler"]), Bridge)
    assert attribute(function["initializer"]) == main.handler.initializer
    lifecycle = function["instanceLifecycleConfig"]
    check("instanceLifecycleConfig", lifecycle, FC2)
    assert attribute(lifecycle["preFreeze"]["handler"]) == main.handler.pre_freeze
    assert attribute(lifecycle["preStop"]["handler"]) == main.handler.pre_stop
    for trigger in props["triggers"]:
        check("trigger", trigger, FC2)
        check("httpTriggerConfig", trigger["config"], FC2)
