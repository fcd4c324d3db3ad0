"""CartPole Lab's engine: play random games, keep the good ones, train a network to imitate
them, and let it play. One module per stage; see the README's architecture section.

Importing this package is cheap: TensorFlow is imported only by the modules that need it
(``model``, ``training``, ``policies`` when given a Keras model, ``ensemble``).
"""

__version__ = "0.1.0"
