"""Cost of talking: a K=4 social step against the sum of the same members' isolated steps.

The isolated reference is the same four members trained with every channel closed, on the same
batches, timed alternately in the same run (best of several repeats). Target: logit-channel
overhead <= 10%.

    python benchmarks/social_overhead.py [--steps 16] [--repeats 3]
"""

from __future__ import annotations

import argparse

from common import batches, best_time, env_line, positive_int, quick_config, quick_genomes
from multitudes.config.schema import SocialConfig
from multitudes.population.member import Member
from multitudes.population.population import Population
from multitudes.runs.device import resolve_device


def population(social: SocialConfig, device) -> Population:
    members = [Member.create(f"m{i}", g, device) for i, g in enumerate(quick_genomes())]
    return Population(members, social, quick_config().train, 10**6, device)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=positive_int, default=16)
    parser.add_argument("--repeats", type=positive_int, default=3)
    args = parser.parse_args()
    device = resolve_device("auto")
    train = quick_config().train
    data = batches(args.steps, train.batch_size, quick_genomes()[0].context,
                   sampling=train.sampling)
    arms = {
        "isolated (sum of members)": SocialConfig(channel="none"),
        "logit channel, uniform": SocialConfig(channel="logit"),
        "logit channel, fitness": SocialConfig(channel="logit", trust="fitness"),
        # the scaling study's language channel: the quick members' context is 32 bytes
        "logit + language (E=16, 4x16 B)": SocialConfig(
            channel="logit", language_every=16, language_prompt_length=16, language_length=16),
    }
    pops = {name: population(cfg, device) for name, cfg in arms.items()}
    times = {name: [] for name in arms}
    for pop in pops.values():  # warm up
        for b in data[:2]:
            pop.step(*b)
    for _ in range(args.repeats):
        for name, pop in pops.items():
            times[name].append(best_time(lambda: [pop.step(*b) for b in data], 1))
    print(env_line(device))
    base = min(times["isolated (sum of members)"]) / args.steps
    print(f"{'arm':<32} {'ms/step':>8} {'overhead':>9}")
    for name in arms:
        t = min(times[name]) / args.steps
        print(f"{name:<32} {t * 1000:>8.1f} {t / base - 1:>+9.1%}")
    language_split(pops, times, data, args)


def language_split(pops: dict, times: dict, data, args) -> None:
    """How the language channel's cost splits: one speaking turn timed alone (every member
    sampling its continuations byte by byte), spread over the E steps it serves; the rest of
    what the language row costs over the logit channel (same trust) is reading the texts. The
    timed steps hold one turn in every E when --steps is a multiple of E (the default: 16)."""
    name = next(n for n in pops if "language" in n)
    pop, every = pops[name], pops[name].social.language_every
    x = data[0][0][:, :-1]
    turn = best_time(lambda: pop._speak(x), args.repeats)  # the step's own speaking, alone
    step = min(times[name]) / args.steps
    logit = min(times["logit channel, uniform"]) / args.steps
    speaking, over = turn / every, step - logit
    print(f"its language channel: a speaking turn {turn * 1000:.1f} ms, every {every} steps "
          f"{speaking * 1000:.1f} ms a step; reading the texts {(over - speaking) * 1000:.1f} "
          f"ms a step (the rest of its {over * 1000:.1f} ms over the logit channel)")


if __name__ == "__main__":
    main()
