"""Leaves every layer may import: errors, atomic files and safe archives, the
host machine, code versions, the study's loss names. They import nothing else
of softloss."""
