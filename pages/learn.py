"""The learner's layer: what to notice on each page (in the game's own terms) and the words a
class meets, explained once (the Glossary page reads :data:`GLOSSARY`)."""

from __future__ import annotations

import streamlit as st

from cartpole_core.envs import env_defaults, env_info, player_does, target_words

#: Each term a page uses without explaining it, with its meaning here.
GLOSSARY: dict[str, str] = {
    "the notebook": "The classic teaching notebook this lab grew from (see Home): a document of code and its "
    "results that plays random games, keeps the good ones and trains a network on them. Pages 1 to 4 are its steps.",
    "score": "The sum of a game's rewards. Each game counts them its own way: CartPole +1 a step while the "
    "pole stays up; Acrobot and MountainCar −1 a step until the goal, so higher (closer to 0) is better.",
    "median": "The middle score: half the games scored more, half less. One lucky game moves it less than the mean.",
    "solved, mastered": "Solved: the mean score the game's makers set as its bar (475 on CartPole-v1, −100 on "
    "Acrobot-v1). Mastered (CartPole): a mean of 500, every game to the step limit.",
    "seed": "The number random choices start from. The same seed gives the same games, the same data and "
    "the same network; another seed, other games. Results vary between seeds: compare over several.",
    "random play": "A player that picks every action at random: the baseline every network is measured against.",
    "kept game": "A random game that scored at least the requirement (or was among the best share). Its "
    "steps, each an observation and the action taken, become the training data.",
    "observation": "What the player sees at a step: a few numbers (CartPole: cart position and speed, pole "
    "angle and turning speed).",
    "dataset, row": "The kept games' steps, one row per step: the observation and the action taken. Label "
    "balance is how often each action appears among the rows.",
    "network": "A neural network: layers of units, each unit a sum of the layer before it times its weights. It "
    "turns an observation into a probability for each action; training adjusts the weights.",
    "hidden layers, units": "The network's layers between the observation and the action probabilities, and the "
    "units in each: 64,64 means two layers of 64 units.",
    "epoch": "One pass of training over every row of the data. More epochs learn the data better, up to "
    "copying its noise.",
    "batch": "The rows the network learns from in one step; an epoch is many batches.",
    "learning step, learning rate": "A learning step moves the network's weights a little, so that it makes "
    "fewer mistakes on one batch; the learning rate is how big that move is.",
    "loss": "How wrong the network's probabilities are on the rows (cross-entropy): lower is better.",
    "accuracy": "The share of rows where the network's most probable action is the action in the data.",
    "chance level": "The accuracy of guessing: one over the number of actions (50 % with two actions, 33 % "
    "with three). Imitating random moves cannot be much better: what counts is how the network plays.",
    "validation": "Games held out of training: the network's accuracy on them says whether it learned "
    "something general or copied its rows.",
    "dropout": "Switching off a share of the network's units at random while it trains, so it cannot lean "
    "on any one of them.",
    "training logs": "Loss and accuracy per epoch and the network's weights, written as files for the log "
    "viewer the notebook uses; Train says how to open them.",
    "greedy, sampled": "Two ways a network plays: greedy takes its most probable action; sampled draws an "
    "action from its probabilities (so it explores, as generations do while collecting games).",
    "choice ratios": "The share of steps on which a player took each action.",
    "temperature": "How sampled play draws: below 1 the favourite action is drawn more often, 1 draws from "
    "the probabilities as they are.",
    "ensemble, vote": "Several networks trained apart that decide together: soft vote averages their "
    "probabilities, hard vote counts each one's favourite action.",
    "generation": "One round of improving: the network plays, its best games are kept, and it trains on them.",
    "cross-entropy method": "The name of what Generations do: play many games, keep the best share, train on "
    "them, and play again with the better network. It needs no more from the game than the scores.",
    "exploration, random actions": "Moves the network would not choose, so that new (sometimes better) games "
    "appear: sampled play draws them from its probabilities, random actions replace a share of its moves.",
    "fresh games": "Games a network was never trained on nor picked on. The best of many generations flatters "
    "itself on the games it was picked on; its mean on fresh games (the confirmation) does not.",
    "reinforcement learning, PPO": "Reinforcement learning: learning to act from the rewards, by trial and "
    "error. PPO (proximal policy optimisation) is a standard such method, the usual yardstick on these games. "
    "This lab uses none: the rewards only pick the games to imitate.",
    "95 % interval": "A range that holds the true mean in 95 of 100 repeats, from the spread between seeds. "
    "Two overlapping intervals mean the difference may be luck.",
    "sweep, trial": "A sweep runs the same steps with every combination of the settings it varies, on several "
    "seeds; each run is a trial.",
    "policy": "A player's rule: for each observation, a probability for each action. The Policy map draws it "
    "over two observation values.",
    "run, class board": "A run is a result saved on the server (settings, figures, files) for anyone to load. "
    "The class board ranks the saved networks by their mean on fresh games.",
    "engine, job, processor": "The engine runs the heavy work (training, playing many games) apart from the web "
    "page: each job takes a processor of the server, and waits in line while all are busy.",
    "library, wheel": "The library is this lab's code, the same the pages run. A wheel is that library packed "
    "in one file for pip, Python's installer: Show the code and Take it home offer it, so the code runs on "
    "your machine.",
}


def _notes(page: str, env_id: str) -> str:
    info, d = env_info(env_id), env_defaults(env_id)
    chance = f"{100 / info.n_actions:.0f} %"
    if page == "random_play":
        return (
            f"Each step the player {player_does(env_id)}, at random. Look at how short or how long the games are: "
            f"their scores are what every network is measured against. {env_id} is {target_words(env_id)}."
        )
    if page == "generate":
        return (
            f"Most random games are poor; only a few are kept ({d.keeping()}). The kept games' mean is far above "
            "the mean of all games: that gap is what the network will imitate."
        )
    if page == "train":
        return (
            f"Accuracy stays modest: with {info.n_actions} actions chance is {chance}, and the random player's "
            "moves in a kept game are still mostly random. Watch the loss fall, then flatten."
        )
    if page == "play":
        return (
            "The network plays the same games as random play, so game by game the difference is the network's "
            "doing. It usually beats the games it learned from: it keeps their tendency, not their noise."
        )
    if page == "ensemble":
        return (
            "Weak members disagree; their vote is often steadier than any one of them. Compare the ensemble's "
            "mean with the best member's, on the same games."
        )
    if page == "generations":
        return (
            "Each generation learns from the network's own best games, so the data gets better as the network "
            f"does. Watch the mean of the player that counts ({d.player}) rise toward the target ({env_id} is "
            f"{target_words(env_id)}), and whether the other player follows: the two can part ways."
        )
    return ""


def what_to_notice(page: str, env_id: str, numbers: str = "") -> None:
    """Two or three lines on what to look at on ``page``, for the game ``env_id``; ``numbers``:
    what this session's own results show, computed from them (said after the lines)."""
    text = _notes(page, env_id)
    if text:
        with st.expander("What to notice", icon=":material/lightbulb:"):
            st.markdown(text)
            if numbers:
                st.markdown(numbers)
            st.caption("Words you meet here are explained on the Glossary page.")
