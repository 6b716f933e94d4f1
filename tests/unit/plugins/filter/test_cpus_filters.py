"""edgeai.appliance.cpuset_cpus: CPU numbers from Docker's cpuset form."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.edgeai.appliance.plugins.filter.cpus import cpuset_cpus


@pytest.mark.parametrize(
    ("cpuset", "cpus"),
    [
        ("", []),
        ("0", [0]),
        ("0-2", [0, 1, 2]),
        ("1,3", [1, 3]),
        ("0-1,3-4,7", [0, 1, 3, 4, 7]),
        (" 2-3, 0 ", [0, 2, 3]),
        ("0-2,1", [0, 1, 2]),
        ("5-5", [5]),
    ],
)
def test_cpu_numbers(cpuset: str, cpus: list[int]) -> None:
    assert cpuset_cpus(cpuset) == cpus


@pytest.mark.parametrize("cpuset", ["a", "0-", "-1", "0,,1", "1-0", "0;1", "0.5"])
def test_bad_lists_fail_quoting_them(cpuset: str) -> None:
    with pytest.raises(AnsibleFilterError) as failure:
        cpuset_cpus(cpuset)
    assert str(failure.value).startswith("cpuset_cpus: ")
    assert repr(cpuset) in str(failure.value)
