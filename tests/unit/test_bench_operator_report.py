"""The operator benchmark's verdicts: computed from the run's figures, and only at the sizes the
goals name (a quick run judges nothing)."""

from __future__ import annotations

from tests.bench.operator.report import Results, Storm, goals, markdown


def results(
    storm_seconds: float, peak_rss_mib: float, idle_cpu_seconds: float, size: int = 500
) -> Results:
    return Results(
        command="python -m tests.bench.operator",
        storms=[Storm("storm", size, storm_seconds, [1.0, 2.0])],
        baseline_loop_seconds=5.0,
        baseline_threads_seconds=2.0,
        baseline_threads=8,
        population=4 * size,
        population_jobs=8 * size,
        peak_rss_mib=peak_rss_mib,
        idle_seconds=30.0,
        idle_cpu_seconds=idle_cpu_seconds,
        deletion_seconds=60.0,
    )


def test_each_goal_is_judged_from_its_figure() -> None:
    met = [goal.verdict for goal in goals(results(10.0, 143.0, 0.1))]
    missed = [goal.verdict for goal in goals(results(10.5, 144.0, 0.3))]
    assert met == ["met", "met", "met"]
    # 10.5 s is 2.1 times the 5 s loop; 144 MiB is 151 MB; 0.3 CPU-s in 30 s is 1 %.
    assert missed == ["**missed**"] * 3


def test_a_run_at_other_sizes_judges_nothing() -> None:
    quick = results(1.0, 50.0, 0.0, size=100)
    assert all(goal.verdict.startswith("not judged") for goal in goals(quick))
    assert "Goals met: 0 / 0 judged" in markdown(quick, "operator.png")


def test_the_page_shows_the_verdicts() -> None:
    page = markdown(results(14.0, 295.0, 0.01), "operator.png")
    assert "Goals met: 1 / 3" in page
    assert "| 2.80 times | ≤ 2 times | **missed** |" in page
    assert "| 295 MiB (309 MB) | ≤ 150 MB | **missed** |" in page


def test_the_page_says_whether_the_storm_waited_for_the_cores() -> None:
    """From the CPU each process used in the first storm (14 s on 2 cores: 28 CPU-s)."""
    busy = results(14.0, 200.0, 0.0)
    busy.cores, busy.storm_cpu_seconds = 2, 8.0
    busy.storm_cpu_by_process = {"operator": 8.0, "kube-apiserver": 13.0, "etcd": 3.0}
    page = markdown(busy, "operator.png")
    assert "waited for: the machine's 2 cores, not answers" in page
    assert "used 24.0 of the 28.0 CPU-seconds the cores had (86%): kube-apiserver 13.0," in page
    idle = results(14.0, 200.0, 0.0)
    idle.cores, idle.storm_cpu_seconds = 2, 2.0
    idle.storm_cpu_by_process = {"operator": 2.0, "kube-apiserver": 4.0}
    assert "waited for: answers, not the machine's cores" in markdown(idle, "operator.png")
    shared = results(14.0, 200.0, 0.0)
    assert "the cluster's processes went unmeasured" in markdown(shared, "operator.png")
