"""How the search compares a scored child with its population: by score, or within the set (AZ-NAS).

An ordinary proxy gives each architecture a number of its own, stored once:
the child joins the population and, while the population is larger than N,
the member of lowest score leaves (:class:`ByScore`).

A set-relative proxy (:class:`hwnas.search.proxies.base.SetRelativeProxy`)
gives each architecture components, and a score only within a set
(``aggregate``). :class:`WithinSet` keeps every member's components (as its
``proxy_<name>`` columns) and, when a child arrives, aggregates over the
population **plus the child**; while that set is larger than N the member of
lowest aggregate leaves (on equal aggregates the oldest, as with scores), and
the aggregate is recomputed over what remains. Every member's ``score`` is its
aggregate within the current population, so the search's best (the final
pick) is the best aggregate over the final population. Recomputing costs a
rank computation per scored child; no network is rebuilt. docs/search.md says
why this choice.
"""

from __future__ import annotations


def _lowest(population: list[dict]) -> int:
    """Index of the member of lowest score (the first of equal ones)."""
    return min(range(len(population)), key=lambda j: population[j]["score"])


class ByScore:
    """An ordinary proxy: each member keeps the score it was given."""

    set_relative = False

    def admit(self, population: list[dict], member: dict, capacity: int) -> float:
        """Add ``member`` (its ``score`` set), drop the lowest while over ``capacity``; the child's score."""
        population.append(member)
        while len(population) > capacity:
            population.pop(_lowest(population))
        return member["score"]


class WithinSet:
    """A set-relative proxy: scores are aggregates of the members' components within the current population."""

    set_relative = True

    def __init__(self, proxy):
        self.aggregate = proxy.aggregate
        self.names = tuple(proxy.component_names)

    def rescore(self, population: list[dict]) -> None:
        table = [{k: m[f"proxy_{k}"] for k in self.names} for m in population]
        for m, score in zip(population, self.aggregate(table)):
            m["score"] = float(score)

    def admit(self, population: list[dict], member: dict, capacity: int) -> float:
        """Add ``member`` (its components as ``proxy_<name>``), aggregate over population + child, drop the lowest
        while over ``capacity`` (re-aggregating after each); the child's aggregate among population + child."""
        population.append(member)
        self.rescore(population)
        score = member["score"]
        while len(population) > capacity:
            population.pop(_lowest(population))
            self.rescore(population)
        return score


def selection_for(proxy) -> ByScore | WithinSet:
    from hwnas.search.proxies.base import SetRelativeProxy

    return WithinSet(proxy) if isinstance(proxy, SetRelativeProxy) else ByScore()
