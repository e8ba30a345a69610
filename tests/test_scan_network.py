"""The site audit visits public addresses only: what the scanner refuses, and the gate (the proxy
Chromium goes through) refusing a connection the page, a redirect or a sub-request would make.
(tests/test_scan_browser.py scans through the gate in Chromium.)"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from keksi import scan_network, settings

from .ledger import add_site
from .widget_host import HostServer


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1",
                                     "224.0.0.1"])
def test_addresses_that_are_not_public_are_refused(address):
    assert not scan_network.Targets().permits(address)
    with pytest.raises(scan_network.Refused) as refused:
        scan_network.Targets().check(f"http://[{address}]/" if ":" in address else f"http://{address}/")
    assert refused.value.address == address


def test_public_addresses_and_allowed_networks_pass():
    assert scan_network.Targets().permits("93.184.216.34") and scan_network.Targets().permits("2a00:1450::1")
    intranet = scan_network.Targets(scan_network.networks("10.1.0.0/16, 127.0.0.1"))
    assert intranet.permits("10.1.2.3") and intranet.permits("127.0.0.1")
    assert not intranet.permits("10.2.0.1") and not intranet.permits("169.254.169.254")
    intranet.check("http://10.1.2.3:8080/")  # no exception
    with pytest.raises(scan_network.Refused):
        scan_network.Targets().check("http://localhost:8000/")  # a name is resolved, then refused
    scan_network.Targets().check("http://no-such-host.invalid/")  # unresolved: the browser says so


def test_the_setting_is_checked_at_start_up():
    assert settings.from_environ({})["SCAN_ALLOW_PRIVATE"] == ""
    assert settings.from_environ({"KEKSI_SCAN_ALLOW_PRIVATE": "10.1.0.0/16"})["SCAN_ALLOW_PRIVATE"] == "10.1.0.0/16"
    with pytest.raises(SystemExit, match="KEKSI_SCAN_ALLOW_PRIVATE"):
        settings.from_environ({"KEKSI_SCAN_ALLOW_PRIVATE": "intranet"})


def _through(gate: scan_network.Gate, url: str) -> tuple[int, str, str | None]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": gate.url}))
    try:
        with opener.open(url, timeout=10) as answer:
            return answer.status, answer.read().decode(), answer.headers.get(scan_network.GATE_HEADER)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers.get(scan_network.GATE_HEADER)


def test_the_gate_passes_allowed_hosts_and_refuses_the_rest_untouched():
    targets = scan_network.Targets(scan_network.networks("127.0.0.1/32"))
    with HostServer() as allowed, HostServer("127.0.0.2") as inner, scan_network.Gate(targets) as gate:
        allowed.add("/page", "hello")
        inner.add("/latest/meta-data/", "secret")
        assert _through(gate, allowed.url + "/page?x=1") == (200, "hello", None)
        assert allowed.hits == ["/page?x=1"]  # the origin-form path, as a server expects it
        assert _through(gate, inner.url + "/latest/meta-data/") == (403, "refused", "refused")
        assert inner.hits == [] and [(r.host, r.address) for r in gate.refused] == [("127.0.0.2", "127.0.0.2")]
        assert _through(gate, "http://127.0.0.1:9/")[2] == "unreachable"  # nobody listens there


def test_the_cli_refuses_a_private_address_before_starting_a_browser(app, runner):
    add_site(app)
    result = runner.invoke(args=["sites", "scan", "demo", "--url", "http://169.254.169.254/latest/meta-data/",
                                 "--chromium", "/nonexistent/chromium"])
    assert result.exit_code == 1
    assert "refused http://169.254.169.254/latest/meta-data/: 169.254.169.254 resolves to 169.254.169.254" in result.output
    assert "KEKSI_SCAN_ALLOW_PRIVATE" in result.output and "Traceback" not in result.output
