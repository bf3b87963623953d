"""Facts the standard owes its readers, beyond being well-formed."""

from __future__ import annotations

from collections import Counter

from spec import Spec


def test_catalogue_is_broad_and_mostly_binding(shipped: Spec) -> None:
    requirements = shipped.requirements
    levels = Counter(r["level"] for r in requirements)
    assert len(requirements) >= 100
    assert levels["MUST"] >= 70
    assert {r["class"] for r in requirements} == set(shipped.codes("conformance-class"))


def test_every_class_is_an_openapi_tag_except_perf(shipped: Spec) -> None:
    tags = {op["tags"][0] for _, _, op in shipped.operations()}
    assert tags == set(shipped.codes("conformance-class")) - {"perf"}


def test_perf_requirements_carry_their_numbers(shipped: Spec) -> None:
    perf = [r for r in shipped.requirements if r["class"] == "perf"]
    assert perf
    assert all("slo" in r for r in perf)


def test_code_lists_follow_their_standards(shipped: Spec) -> None:
    provinces = set(shipped.codes("province"))
    assert len(provinces - {"00"}) == 31  # GB/T 2260: the 31 mainland province-level regions
    assert "66" not in provinces  # XPCC is not a GB/T 2260 province (spec/identification.md)
    assert shipped.codes("industry-section") == [chr(c) for c in range(ord("A"), ord("T") + 1)]
    assert len(shipped.codes("industry-division")) == 97  # GB/T 4754-2017, not 2011's 96
    assert set(shipped.codes("precision")) >= {
        "FP64",
        "FP32",
        "TF32",
        "FP16",
        "BF16",
        "FP8",
        "INT8",
    }


def test_terminal_task_states_have_no_way_out(shipped: Spec) -> None:
    for state in shipped.codelist("task-state"):
        assert bool(state["x-terminal"]) == (not state.get("x-transitions")), state["const"]


def test_every_operation_names_roles_and_requirements(shipped: Spec) -> None:
    for _, _, operation in shipped.operations():
        assert operation["x-roles"], operation["operationId"]
        assert operation["x-requirements"], operation["operationId"]
