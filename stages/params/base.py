from recranker.schema import Section

# Every params section: unknown keys are errors, values validated on assignment, floats finite.
# The same base as the library's config classes, so a section can be a library config as is.
Strict = Section
