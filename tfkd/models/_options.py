"""Option checking shared by the model family files."""


def check_options(name, options, accepted):
    """Raises a ValueError naming the accepted options when `options` has any other key."""
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"{name} does not accept option(s) {unknown}; accepted: {sorted(accepted)}")
